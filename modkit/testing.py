"""The contract-test kit: the checks every modality and fusion plugin must pass, for modkit's own and yours.

Each check is a plain function that raises ``AssertionError`` with a readable message, so it runs under
pytest or anywhere else. With pytest, parametrise a test over every registered plugin (or the ones you
name) in two lines — what ``tests/api/test_first_party.py`` and the package ``modkit new`` writes do::

    from modkit.testing import modality_contract, fusion_contract

    @modality_contract(plugins=["my_pkg"], names=["spectrogram"])
    def test_modality_contract(case, check):
        check(case)

A modality is built from :meth:`modkit.Modality.example` (options and a few raw values); a fusion from
:meth:`modkit.Fusion.example`, over a small model of this module's :class:`VectorModality` and
:class:`ClassModality`, which fusion authors may use in tests of their own. Datasets (``dataset_contract``),
subset samplers (``sampler_contract``) and metrics (``metric_contract``: task-metric functions and
:class:`~modkit.Metric` classes, run through a real posterior pass on the toy model) have checks too,
and :func:`train_recipe` trains a recipe given as a dict, for a test that a plugin learns. pytest is imported only by the ``*_contract`` decorators, and
``import modkit`` never imports this module.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from modkit.core.batch import Batch
from modkit.core.engine import MultimodalVAE
from modkit.core.fusion import Fusion, LossOutput, SubsetPlan
from modkit.core.likelihoods import Categorical, Gaussian
from modkit.core.modality import Modality, ModalityConfig
from modkit.core.nn import GaussianHead, mlp
from modkit.core.records import Column, Records
from modkit.core.subsets import SubsetSampler, all_subsets
from modkit.data.dataset import ColumnRecords, DatasetSource
from modkit.errors import DataError
from modkit.plugins.registry import Registry

LATENT = 4
BATCH = 6

__all__ = ["ModalityCase", "FusionCase", "DatasetCase", "MetricCase", "SamplerCase", "SAMPLER_CHECKS", "sampler_cases",
           "sampler_contract", "metric_protocol", "sampler_masks", "sampler_state_round_trip", "VectorModality", "ClassModality", "MODALITY_CHECKS",
           "FUSION_CHECKS", "DATASET_CHECKS", "METRIC_CHECKS", "check_modality", "check_fusion", "modality_cases", "fusion_cases",
           "dataset_cases", "metric_cases", "modality_contract", "fusion_contract", "dataset_contract", "metric_contract",
           "toy_model", "toy_batch", "train_recipe", "Trained", "plugin_registry", "LATENT", "BATCH"]


# -- cases ---------------------------------------------------------------------------------------
@dataclass
class ModalityCase:
    """One modality class under test: its registered ``name``, recipe ``options`` and raw ``values``."""

    name: str
    cls: type[Modality]
    options: dict[str, Any] = field(default_factory=dict)
    values: list[Any] = field(default_factory=list)
    latent_dim: int = LATENT

    def build(self, seed: int = 0, run_dir: Path | None = None) -> Modality:
        """A prepared modality (``prepare`` fitted on ``values``), its parameters drawn from ``seed``."""
        try:
            config = self.cls.Config.model_validate({"type": self.name, **self.options})
        except ValueError as exc:
            raise AssertionError(f"{self.cls.__name__}.example() options {self.options} do not validate: {exc}") from None
        torch.manual_seed(seed)
        modality = self.cls(self.name, config, self.latent_dim)
        records = ColumnRecords({self.name: list(self.values)}) if self.values else ColumnRecords({self.name: []}, n=0)
        modality.prepare(Column(records, self.name, range(len(records))), run_dir)
        return modality.eval()

    def data(self, modality: Modality, absent: Sequence[bool] = ()) -> Tensor | dict[str, Tensor]:
        """A batch of :data:`BATCH` samples cycled from ``values`` (placeholders when there are none, or where
        ``absent``)."""
        samples = [None if (absent and absent[i]) or not self.values else modality.preprocess(self.values[i % len(self.values)])
                   for i in range(BATCH)]
        return modality.collate(samples)

    def __str__(self) -> str:
        return self.name


@dataclass
class FusionCase:
    """One fusion class under test, built with ``options`` over :func:`toy_model`'s three modalities."""

    name: str
    cls: type[Fusion]
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, seed: int = 0) -> MultimodalVAE:
        return toy_model(self.cls, {"type": self.name, **self.options}, seed)

    def __str__(self) -> str:
        return self.name


# -- toy modalities for fusion tests --------------------------------------------------------------
class VectorConfig(ModalityConfig):
    dim: int = Field(5, ge=1)
    hidden: int = Field(16, ge=1)


class VectorModality(Modality):
    """Real vectors of ``dim`` numbers: MLP encoder and decoder, Gaussian likelihood of scale 1."""

    Config = VectorConfig

    def __init__(self, name: str, config: VectorConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.encoder = mlp([config.dim, config.hidden], final_activation=True)
        self.head = GaussianHead(config.hidden, latent_dim)
        self.feature_dim = config.hidden
        self.decoder = mlp([latent_dim, config.hidden, config.dim])
        self.likelihood = Gaussian(event_dims=1)

    @classmethod
    def example(cls) -> tuple[dict[str, Any], list[Any]]:
        rng = np.random.default_rng(0)
        return {}, [rng.normal(size=5).astype(np.float32) for _ in range(4)]

    def preprocess(self, value: Any) -> Tensor:
        x = torch.as_tensor(np.asarray(value, dtype=np.float32)).flatten()
        if x.numel() != self.config.dim:
            raise DataError(f"{self.name}: expected {self.config.dim} numbers, got {x.numel()}")
        return x

    def placeholder(self) -> Tensor:
        return torch.zeros(self.config.dim)

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x.float())

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def render(self, x: Tensor) -> str:
        return " ".join(f"{v:.2f}" for v in x.tolist())


class ClassConfig(ModalityConfig):
    num_classes: int = Field(3, ge=2)
    hidden: int = Field(16, ge=1)


class ClassModality(Modality):
    """One class out of ``num_classes``: an embedding encoder, an MLP decoder to logits, categorical likelihood."""

    Config = ClassConfig

    def __init__(self, name: str, config: ClassConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.embed = torch.nn.Embedding(config.num_classes, config.hidden)
        self.head = GaussianHead(config.hidden, latent_dim)
        self.feature_dim = config.hidden
        self.decoder = mlp([latent_dim, config.hidden, config.num_classes])
        self.likelihood = Categorical(event_dims=0)

    @classmethod
    def example(cls) -> tuple[dict[str, Any], list[Any]]:
        return {}, [0, 1, 2, 1]

    def preprocess(self, value: Any) -> Tensor:
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise DataError(f"{self.name}: {value!r} is not a class id") from None
        if not 0 <= index < self.config.num_classes:
            raise DataError(f"{self.name}: class {index} is outside 0..{self.config.num_classes - 1}")
        return torch.tensor(index)

    def placeholder(self) -> Tensor:
        return torch.tensor(0)

    def features(self, x: Tensor) -> Tensor:
        if x.is_floating_point():  # class probabilities (B, K): a relaxed or pseudo label
            return torch.relu(x @ self.embed.weight)
        return torch.relu(self.embed(x.long()))

    def pseudo_sample_init(self, n: int) -> Tensor:
        return 0.01 * torch.randn(n, self.config.num_classes)

    def pseudo_sample_data(self, raw: Tensor) -> Tensor:
        return torch.softmax(raw, dim=-1)

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def accuracy(self, out: Tensor, x: Tensor) -> Tensor:
        return (out.argmax(-1) == x).float()

    def render(self, x: Tensor) -> str:
        return str(int(x))


def toy_model(fusion: type[Fusion], options: Mapping[str, Any], seed: int = 0) -> MultimodalVAE:
    """A three-modality model — vectors ``a`` (5 numbers) and ``b`` (3), a class ``c`` (3 classes) — around ``fusion``."""
    torch.manual_seed(seed)
    config = fusion.Config.model_validate(dict(options))
    private = fusion.private_latents(config)  # LATENT shared dims, and each modality's private ones beside (or under) them
    width = fusion.modality_width(config, LATENT)
    modalities = {"a": VectorModality("a", VectorConfig(type="vector"), width),
                  "b": VectorModality("b", VectorConfig(type="vector", dim=3), width),
                  "c": ClassModality("c", ClassConfig(type="class"), width)}
    latent = LATENT + len(modalities) * private
    built = fusion(modalities, latent, config)  # the fusion's latent_dim is the carried width (MHVAE carries every level)
    return MultimodalVAE(modalities, built, built.latent_dim)


def toy_batch(present: Tensor | None = None, seed: int = 1) -> Batch:
    """:data:`BATCH` rows of :func:`toy_model`'s data; by default every modality present in some rows, absent in others."""
    g = torch.Generator().manual_seed(seed)
    if present is None:
        present = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    data = {"a": torch.randn(len(present), 5, generator=g), "b": torch.randn(len(present), 3, generator=g),
            "c": torch.randint(0, 3, (len(present),), generator=g)}
    return Batch(data, present)


# -- modality checks ------------------------------------------------------------------------------
def _lead_shape(data: Tensor | dict[str, Tensor]) -> int:
    return len(next(iter(data.values()))) if isinstance(data, dict) else len(data)


def modality_shapes(case: ModalityCase) -> None:
    """encode → (B, D) twice, features → (B, feature_dim), decode over any leading shape, log_likelihood → (*lead, B)."""
    modality = case.build()
    x = case.data(modality)
    assert _lead_shape(x) == BATCH, f"collate made {_lead_shape(x)} samples of {BATCH}"
    if case.values:
        modality.check(x)
    with torch.no_grad():
        mu, logvar = modality.encode(x)
        assert mu.shape == logvar.shape == (BATCH, case.latent_dim), f"encode gave {tuple(mu.shape)}, {tuple(logvar.shape)}; expected ({BATCH}, {case.latent_dim})"
        assert torch.isfinite(mu).all() and torch.isfinite(logvar).all(), "encode gave non-finite values"
        features, mu2, logvar2 = modality.encode_with_features(x)
        assert features.shape == (BATCH, modality.feature_dim), f"features are {tuple(features.shape)}; feature_dim is {modality.feature_dim}"
        assert torch.allclose(mu2, mu, atol=1e-5) and torch.allclose(logvar2, logvar, atol=1e-5), "encode_with_features disagrees with encode"
        flat = modality.decode(torch.randn(BATCH, case.latent_dim))
        out = modality.decode(torch.randn(3, BATCH, case.latent_dim))
        assert out.shape[:2] == (3, BATCH) and out.shape[2:] == flat.shape[1:], f"decode: {tuple(out.shape)} for (3, {BATCH}, D), {tuple(flat.shape)} for ({BATCH}, D)"
        ll = modality.log_likelihood(out, x)
        assert ll.shape == (3, BATCH), f"log_likelihood gave {tuple(ll.shape)}; expected (3, {BATCH}): one number per latent row and sample"
        assert torch.isfinite(ll).all(), "log_likelihood is not finite"
        prediction = modality.predict(flat)
        assert _lead_shape(prediction) == BATCH, "predict must keep the batch axis"
    one = {k: v[0] for k, v in x.items()} if isinstance(x, dict) else x[0]
    try:
        shown = modality.render(one)
    except NotImplementedError:
        return
    assert isinstance(shown, str) or (isinstance(shown, np.ndarray) and shown.ndim == 3 and shown.shape[-1] == 3
                                      and 0 <= float(shown.min()) and float(shown.max()) <= 1), \
        f"render must give a string or an (H, W, 3) array in [0, 1], got {type(shown).__name__} {getattr(shown, 'shape', '')}"


def modality_absent_scores_zero(case: ModalityCase) -> None:
    """In a model, rows where the modality is absent score exactly 0 and leave the posterior as if it were not there."""
    modality = case.build()
    other = VectorModality("other", VectorConfig(type="vector"), case.latent_dim)
    modalities = {case.name: modality, "other": other}
    model = MultimodalVAE(modalities, Fusion(modalities, case.latent_dim, Fusion.Config(type="poe")), case.latent_dim).eval()
    absent = [i % 2 == 1 for i in range(BATCH)]
    present = torch.tensor([[not a, True] for a in absent])
    batch = Batch({case.name: case.data(modality, absent), "other": torch.randn(BATCH, 5)}, present)
    with torch.no_grad():
        z = torch.randn(2, BATCH, case.latent_dim)
        _, per = model.present_reconstruction(model.log_likelihoods(z, batch), batch.present)
        gone = per[case.name][:, present[:, 0] == 0]
        assert bool((gone == 0).all()), f"an absent {case.name} scored {gone.flatten()[:3].tolist()}, not 0"
        both = model.posterior(batch, [case.name, "other"])
        alone = model.posterior(batch, ["other"])
        rows = ~present[:, 0]
        assert torch.allclose(both.mean[:, rows], alone.mean[:, rows], atol=1e-6), "an absent modality moved the posterior"


def modality_state_dict_round_trip(case: ModalityCase) -> None:
    """A state_dict saved (weights only) and loaded into a freshly built instance reproduces every output."""
    with TemporaryDirectory() as tmp:
        first = case.build(seed=0, run_dir=Path(tmp))
        second = case.build(seed=1, run_dir=Path(tmp))  # a fitted tokenizer is reused from the run directory, as on resume
        buffer = io.BytesIO()
        torch.save(first.state_dict(), buffer)
        buffer.seek(0)
        second.load_state_dict(torch.load(buffer, weights_only=True))
        x = case.data(first)
        z = torch.randn(BATCH, case.latent_dim)
        with torch.no_grad():
            for a, b in zip(first.encode(x), second.encode(x)):
                assert torch.equal(a, b), "encode differs after a state_dict round trip"
            assert torch.equal(first.decode(z), second.decode(z)), "decode differs after a state_dict round trip"


def modality_given_text(case: ModalityCase) -> None:
    """``load_given`` never crashes on text no file system takes as a name: it returns a value or raises DataError."""
    modality = case.build()
    for text in ("x" * 300, "nul\0byte", "does/not/exist.png"):
        try:
            modality.load_given(text)
        except DataError:
            pass


MODALITY_CHECKS: list[Callable[[ModalityCase], None]] = [modality_shapes, modality_absent_scores_zero,
                                                         modality_state_dict_round_trip, modality_given_text]


# -- fusion checks ------------------------------------------------------------------------------
def _loss(model: MultimodalVAE, batch: Batch, seed: int = 0) -> LossOutput:
    torch.manual_seed(seed)
    plan = SubsetPlan.from_mask(all_subsets(len(model.names)))
    return model(batch, plan, 1.0)


def _objectives(case: FusionCase) -> tuple[str | None, ...]:
    """``model.stage`` values to check ``loss`` under: None (one stage, or outside training), then each objective."""
    return (None, *case.cls.objectives)


def fusion_finite_loss(case: FusionCase) -> None:
    """``loss`` gives a finite scalar with detached scalar terms (``loss`` among them), and finite gradients; for a
    fusion with stage objectives, under each of them."""
    model = case.build().train()
    for stage in _objectives(case):
        model.stage = stage
        model.zero_grad(set_to_none=True)
        out = _loss(model, toy_batch())
        where = f" (model.stage = {stage!r})" if stage else ""
        assert isinstance(out, LossOutput), f"loss returned {type(out).__name__}, not LossOutput{where}"
        assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"loss is {out.loss}{where}"
        assert "loss" in out.terms, f"terms {sorted(out.terms)} lack 'loss'{where}"
        for key, value in out.terms.items():
            assert torch.is_tensor(value) and value.dim() == 0 and not value.requires_grad and torch.isfinite(value), \
                f"term {key!r} must be a finite detached scalar tensor, is {value!r}{where}"
        out.loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads, f"no parameter received a gradient{where}"
        assert all(torch.isfinite(g).all() for g in grads), f"non-finite gradients{where}"


def fusion_absent_scores_zero(case: FusionCase) -> None:
    """What sits in an absent modality's data (whatever the loader put there) changes neither loss (under each stage
    objective) nor posterior."""
    model = case.build().train()
    batch = toy_batch()
    garbage = Batch({"a": torch.where(batch.present[:, :1], batch.data["a"], 1e3), "b": torch.where(batch.present[:, 1:2], batch.data["b"], -1e3),
                     "c": torch.where(batch.present[:, 2], batch.data["c"], 2)}, batch.present)
    for stage in _objectives(case):
        model.stage = stage
        a, b = _loss(model, batch), _loss(model, garbage)
        assert torch.allclose(a.loss, b.loss, rtol=1e-5, atol=1e-5), \
            f"loss {a.loss.item()} became {b.loss.item()} when absent data changed" + (f" (model.stage = {stage!r})" if stage else "")
    model.stage = None
    model.eval()
    with torch.no_grad():
        mask = all_subsets(3)
        p, q = model.posterior(batch, mask), model.posterior(garbage, mask)
        assert torch.allclose(p.mean, q.mean, atol=1e-5), "absent data moved the posterior"


def fusion_posterior_shapes(case: FusionCase) -> None:
    """``posterior(subsets)``: mean (S, B, D), rsample() (S, B, D), rsample(n) (n, S, B, D), log_prob → (n, S, B), finite."""
    model = case.build().eval()
    batch, mask = toy_batch(), all_subsets(3)
    s = mask.shape[0]
    with torch.no_grad():
        post = model.posterior(batch, mask)
        d = model.latent_dim  # LATENT, or more with private latents
        assert post.mean.shape == (s, BATCH, d), f"posterior mean is {tuple(post.mean.shape)}, expected ({s}, {BATCH}, {d})"
        assert post.rsample().shape == (s, BATCH, d), f"rsample() is {tuple(post.rsample().shape)}"
        z = post.rsample(7)
        assert z.shape == (7, s, BATCH, d), f"rsample(7) is {tuple(z.shape)}"
        prior = model.fusion.prior()  # None: no unconditional prior (MEME), which is allowed
        if model.fusion.no_likelihood_reason:  # no density over z (a hierarchical model): log_prob is refused, by name
            for refusing in (post, prior):
                try:
                    refusing.log_prob(z) if refusing is post else refusing.log_prob(prior.rsample(3))
                except NotImplementedError:
                    continue
                raise AssertionError("the fusion sets no_likelihood_reason, yet a log_prob did not refuse")
            assert prior is None or prior.rsample(3).shape == (3, d), "prior() is neither None nor a (D,) distribution"
            return
        lp = post.log_prob(z)
        assert lp.shape == (7, s, BATCH) and torch.isfinite(lp).all(), f"log_prob gave {tuple(lp.shape)}"
        assert prior is None or (prior.rsample(3).shape == (3, d) and torch.isfinite(prior.log_prob(prior.rsample(3))).all()), \
            "prior() is neither None nor a (D,) distribution"


def fusion_posterior_nothing_present(case: FusionCase) -> None:
    """With no modality present, every subset's posterior is still a finite distribution (the prior, for PoE)."""
    model = case.build().eval()
    batch = toy_batch(torch.zeros(BATCH, 3, dtype=torch.bool))
    with torch.no_grad():
        post = model.posterior(batch, all_subsets(3))
        z = post.rsample(2)
        dense = not model.fusion.no_likelihood_reason  # a fusion without a density over z refuses log_prob (posterior_shapes checks)
        assert torch.isfinite(post.mean).all() and torch.isfinite(z).all() and (not dense or torch.isfinite(post.log_prob(z)).all()), \
            "the posterior given nothing is not finite"


def fusion_state_dict_round_trip(case: FusionCase) -> None:
    """After an optimiser step, the model's state_dict (weights only) loaded into a fresh build gives the same posterior."""
    model = case.build(seed=0).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    _loss(model, toy_batch()).loss.backward()
    optimiser.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = case.build(seed=1)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    model.eval(), fresh.eval()
    with torch.no_grad():
        mask = all_subsets(3)
        assert torch.equal(model.posterior(toy_batch(), mask).mean, fresh.posterior(toy_batch(), mask).mean), \
            "the posterior differs after a state_dict round trip"


def fusion_stages(case: FusionCase) -> None:
    """The stages a fusion declares (``Fusion.stages``), if any: valid recipe stages over the epochs asked for, each
    objective one of ``objectives``, each freeze pattern naming parameters of the model (and not all of them)."""
    from modkit.config.recipe import StageSpec
    from modkit.training.stages import matches

    model = case.build()
    names = [n for n, _ in model.named_parameters()]
    for epochs in (10, 301):
        declared = case.cls.stages(model.fusion.config, epochs)
        if declared is None:
            return
        specs = [StageSpec.model_validate(d) for d in declared]
        assert sum(s.epochs for s in specs) == epochs, f"stages over {epochs} epochs last {sum(s.epochs for s in specs)}"
        for spec in specs:
            assert spec.goal in case.cls.objectives, f"stage {spec.name!r}'s objective {spec.goal!r} is not in objectives {case.cls.objectives}"
            frozen = set()
            for pattern in spec.freeze:
                hit = {n for n in names if matches(n, pattern)}
                assert hit, f"stage {spec.name!r} freezes {pattern!r}, which matches no parameter"
                frozen |= hit
            assert frozen != set(names), f"stage {spec.name!r} freezes every parameter"


FUSION_CHECKS: list[Callable[[FusionCase], None]] = [fusion_finite_loss, fusion_absent_scores_zero, fusion_posterior_shapes,
                                                     fusion_posterior_nothing_present, fusion_state_dict_round_trip, fusion_stages]


def check_modality(case: ModalityCase) -> None:
    """Every modality check, in order (the first failure raises)."""
    for check in MODALITY_CHECKS:
        check(case)


def check_fusion(case: FusionCase) -> None:
    """Every fusion check, in order (the first failure raises)."""
    for check in FUSION_CHECKS:
        check(case)


# -- datasets and metrics -----------------------------------------------------------------------
@dataclass
class DatasetCase:
    """One dataset class under test, loaded with ``options`` from ``root`` (default: the working directory's data/)."""

    name: str
    cls: type[DatasetSource]
    options: dict[str, Any] = field(default_factory=dict)
    root: Path = Path("data")

    def load(self) -> dict[str, Records]:
        config = self.cls.Config.model_validate({"type": self.name, **self.options})
        return self.cls(config, self.root).load()

    def __str__(self) -> str:
        return self.name


def dataset_splits(case: DatasetCase) -> None:
    """``load()`` gives ``all`` or ``train`` and ``test``, each non-empty Records whose rows hold exactly their fields."""
    splits = case.load()
    assert set(splits) in ({"all"}, {"train", "test"}), f"load() returned splits {sorted(splits)}; expected 'all' or 'train' and 'test'"
    for split, records in splits.items():
        assert isinstance(records, Records), f"split {split!r} is {type(records).__name__}, not Records"
        assert len(records) > 0, f"split {split!r} is empty"
        for i in sorted({0, len(records) - 1}):
            row = records.get(i)
            assert set(row) == set(records.fields), f"{split} row {i} has fields {sorted(row)}, records.fields says {sorted(records.fields)}"
            assert isinstance(records.describe(i), str)


@dataclass
class MetricCase:
    """One task-metric function under test (``registry.add_metric(name, fn)``), tried on the toy modalities and on
    ``modalities`` (by default every registered modality, built from its ``example()``)."""

    name: str
    fn: Callable[[Modality], Any]
    modalities: list[ModalityCase] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


def metric_states(case: MetricCase) -> None:
    """A task-metric function: ``fn(modality)`` is None or a state; ``update(predicted, target)`` over two batches of
    predictions and data, then ``compute()`` gives None, a finite number or a dict of them — and at least one modality
    applies. A :class:`~modkit.Metric` class gets :func:`metric_protocol` instead."""
    if isinstance(case.fn, type):
        metric_protocol(case)
        return
    toys = [ModalityCase("a", VectorModality, {}, VectorModality.example()[1]), ModalityCase("c", ClassModality, {}, ClassModality.example()[1])]
    applied = []
    for modality_case in [*toys, *case.modalities]:
        modality = modality_case.build()
        state = case.fn(modality)
        if state is None:
            continue
        applied.append(modality_case.name)
        for seed in (0, 1):
            torch.manual_seed(seed)
            with torch.no_grad():
                predicted = modality.predict(modality.decode(torch.randn(BATCH, modality_case.latent_dim)))
            state.update(predicted, modality_case.data(modality))
        value = state.compute()
        values = list(value.values()) if isinstance(value, dict) else [value]
        assert all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values), \
            f"compute() gave {value!r} for {modality_case.name}; expected None, a finite number or a dict of them"
    assert applied, f"metric {case.name} applies to none of {[c.name for c in [*toys, *case.modalities]]}"


class _ToyView:
    """:func:`toy_batch` as the evaluated test view of a metric check: ``len`` and ``__getitems__``, as ``modkit eval`` reads it."""

    def __init__(self, batch: Batch):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch)

    def __getitems__(self, positions: list[int]) -> Batch:
        index = torch.as_tensor(positions, dtype=torch.long)
        return Batch({k: v[index] for k, v in self.batch.data.items()}, self.batch.present[index])


def metric_protocol(case: MetricCase) -> None:
    """A :class:`~modkit.Metric` class: its declarations pass the registry's check, an instance is a ``Metric``; fed by
    ``modkit eval``'s posterior pass over :func:`toy_model` (PoE, every subset, some modalities absent), ``compute()``
    writes only declared keys, in JSON; ``summary`` gives finite numbers and ``report`` blocks, for that result and for
    a result without the metric (an older eval.json)."""
    import json

    from modkit.evaluation.metric import EvalContext, EvalSettings, Figure, Metric, Stages, Table, Text
    from modkit.evaluation.posterior_pass import posterior_pass
    from modkit.core.subsets import subset_names
    from modkit.plugins.registry import check_metric_class

    problem = check_metric_class(case.fn)
    assert problem is None, f"metric {case.name}: class {problem}"
    metric = case.fn()
    assert isinstance(metric, Metric), f"metric {case.name}: an instance is not a modkit.Metric"
    model = toy_model(Fusion, {"type": "poe"}).eval()
    masks = all_subsets(3)
    view = _ToyView(toy_batch())
    settings = EvalSettings(iw_samples=4, prior_samples=4, joint_samples=8, batch_size=4, iw_items=None)
    context = EvalContext(run=None, model=model, settings=settings, names=model.names, masks=masks,
                          labels=subset_names(masks, model.names), test=view, train=view, iw=view, attributes=[],
                          test_attributes={}, echo=lambda text: None, clock=Stages({}))
    torch.manual_seed(0)
    metric.start(context)
    posterior_pass(context, [metric], chunk_elements=1 << 20)
    values = metric.compute()
    assert isinstance(values, dict) and set(values) <= set(metric.keys), \
        f"metric {case.name}: compute() wrote {sorted(values) if isinstance(values, dict) else values!r}, declared keys {metric.keys}"
    json.dumps(values)  # eval.json holds it as it is
    bare = {"modalities": model.names, "settings": dict(settings.__dict__)}
    for given in ({**bare, **values}, bare):
        summary = metric.summary(given, model.names)
        assert all(isinstance(v, float) and math.isfinite(v) for v in summary.values()), f"metric {case.name}: summary gave {summary!r}"
        blocks = metric.report(given)
        assert isinstance(blocks, list) and all(isinstance(b, (Text, Table, Figure)) for b in blocks), \
            f"metric {case.name}: report() gave {blocks!r}, not a list of Text, Table and Figure blocks"
    assert metric.report(bare) == [], f"metric {case.name}: report() shows a section for a result without its numbers"


# -- subset samplers ------------------------------------------------------------------------------
@dataclass
class SamplerCase:
    """One subset-sampler class under test, built with ``options`` (besides ``type``)."""

    name: str
    cls: type[SubsetSampler]
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, n: int, seed: int = 0) -> SubsetSampler:
        return self.cls(n, self.cls.Config.model_validate({"type": self.name, **self.options}), seed=seed)

    def __str__(self) -> str:
        return self.name


def sampler_masks(case: SamplerCase) -> None:
    """For 1 to 5 modalities, ``sample()`` gives a (k ≥ 1, N) 0/1 matrix without an empty row; a ``fixed`` sampler
    gives the same matrix every call."""
    for n in (1, 2, 3, 5):
        sampler = case.build(n)
        mask = sampler.sample()
        assert isinstance(mask, Tensor) and mask.dim() == 2 and mask.shape[1] == n and len(mask) >= 1, \
            f"sample() for {n} modalities gave {getattr(mask, 'shape', mask)!r}; expected (k >= 1, {n})"
        assert bool(((mask == 0) | (mask == 1)).all()), f"sample() for {n} modalities has entries other than 0 and 1"
        assert bool(mask.bool().any(1).all()), f"sample() for {n} modalities has an empty subset (a row of zeros)"
        if sampler.fixed:
            assert torch.equal(sampler.sample(), mask), f"a fixed sampler changed its subsets between calls ({n} modalities)"


def sampler_state_round_trip(case: SamplerCase) -> None:
    """``state_dict`` taken mid-run and loaded into a fresh sampler (another seed) continues with the same subsets (resume)."""
    first = case.build(4, seed=0)
    first.sample()
    state = first.state_dict()
    expected = [first.sample() for _ in range(3)]
    second = case.build(4, seed=1)
    second.load_state_dict(state)
    for i, mask in enumerate(expected):
        assert torch.equal(second.sample(), mask), f"call {i + 1} after load_state_dict differs from the original sampler's"


SAMPLER_CHECKS: list[Callable[[SamplerCase], None]] = [sampler_masks, sampler_state_round_trip]


DATASET_CHECKS: list[Callable[[DatasetCase], None]] = [dataset_splits]
METRIC_CHECKS: list[Callable[[MetricCase], None]] = [metric_states]


# -- training ---------------------------------------------------------------------------------
@dataclass
class Trained:
    """What :func:`train_recipe` leaves: the model (in eval mode), its test split and the epochs' metric rows."""

    model: MultimodalVAE
    test: Any
    rows: list[dict[str, Any]]
    run_dir: Path

    def test_batch(self) -> Batch:
        """Every test item in one batch."""
        return self.test.__getitems__(list(range(len(self.test))))


def train_recipe(recipe: Mapping[str, Any], run_dir: Path) -> Trained:
    """Train a recipe given as a dict (what a YAML recipe holds) into ``run_dir`` (new or empty), quietly, as
    ``modkit train`` does: the folder is locked while it trains, and the run is finished (``summary.json``,
    samples), so ``modkit eval`` and ``modkit generate`` can open it."""
    from modkit.config.recipe import resolve_raw
    from modkit.plugins.loader import load_plugins
    from modkit.runs.lifecycle import make_trainer

    raw = {**recipe, "train": {"progress": False, "device": "cpu", **recipe.get("train", {})}}
    resolved_recipe, resolved = resolve_raw(dict(raw), [], None, source="test")
    plugins = load_plugins(resolved_recipe.plugins, source="recipe")
    trainer = make_trainer(resolved_recipe, resolved, plugins, Path(run_dir), torch.device("cpu"), source="test",
                           echo=lambda *a: None)
    trainer.fit()
    return Trained(trainer.model.eval(), trainer.setup.test, list(trainer.rows), Path(run_dir))


# -- from the registry -------------------------------------------------------------------------
def plugin_registry(plugins: Iterable[str] = ()) -> Registry:
    """The registry the installed plugins and the modules ``plugins`` fill, as a recipe's ``plugins:`` would load
    them; an AssertionError with the reason if one of ``plugins`` is broken. Loaded once per test session."""
    return _load_registry(tuple(plugins))


@functools.lru_cache(maxsize=None)
def _load_registry(plugins: tuple[str, ...]) -> Registry:
    from modkit.plugins.loader import load_plugins

    loaded = load_plugins(plugins, source="test")
    broken = [f"{i.name}: {i.error}" for i in loaded.broken if i.module in set(plugins)]
    if broken:
        raise AssertionError(f"plugin broken: {broken[0]}")
    return loaded.registry


def modality_cases(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                   options: Mapping[str, tuple[dict[str, Any], list[Any]]] | None = None) -> list[ModalityCase]:
    """A case per registered modality (installed plugins plus ``plugins``), or per one of ``names``; ``options``
    overrides a modality's :meth:`~modkit.Modality.example` by name."""
    registry = plugin_registry(plugins)
    chosen = list(names) if names is not None else registry.names("modality")
    cases = []
    for name in chosen:
        cls = registry.get("modality", name)
        example_options, values = (options or {}).get(name) or cls.example()
        cases.append(ModalityCase(name, cls, dict(example_options), list(values)))
    return cases


def fusion_cases(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                 options: Mapping[str, dict[str, Any]] | None = None) -> list[FusionCase]:
    """A case per registered fusion (or per one of ``names``); ``options`` overrides :meth:`~modkit.Fusion.example`."""
    registry = plugin_registry(plugins)
    chosen = list(names) if names is not None else registry.names("fusion")
    return [FusionCase(name, registry.get("fusion", name), dict((options or {}).get(name) or registry.get("fusion", name).example()))
            for name in chosen]


def dataset_cases(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                  options: Mapping[str, dict[str, Any]] | None = None, root: Path = Path("data")) -> list[DatasetCase]:
    """A case per named dataset (by default every registered one — those needing files must find them under ``root``)."""
    registry = plugin_registry(plugins)
    chosen = list(names) if names is not None else registry.names("dataset")
    return [DatasetCase(name, registry.get("dataset", name), dict((options or {}).get(name) or {}), root) for name in chosen]


def metric_cases(plugins: Iterable[str] = (), names: Iterable[str] | None = None) -> list[MetricCase]:
    """A case per registered metric — task-metric functions and :class:`~modkit.Metric` classes — and per built-in
    metric of ``modkit eval`` (or per one of ``names``)."""
    from modkit.evaluation.metrics import builtin_metrics

    registry = plugin_registry(plugins)
    modalities = modality_cases(plugins)
    known = {**{cls.name: cls for cls in builtin_metrics()}, **{n: registry.get("metric", n) for n in registry.names("metric")}}
    chosen = list(names) if names is not None else list(known)
    missing = [n for n in chosen if n not in known]
    assert not missing, f"no metric named {missing[0]} (metrics: {', '.join(known)})"
    return [MetricCase(name, known[name], modalities) for name in chosen]


def sampler_cases(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                  options: Mapping[str, dict[str, Any]] | None = None) -> list[SamplerCase]:
    """A case per registered subset sampler (or per one of ``names``), built with ``options`` by name (default: none)."""
    registry = plugin_registry(plugins)
    chosen = list(names) if names is not None else registry.names("sampler")
    return [SamplerCase(name, registry.get("sampler", name), dict((options or {}).get(name) or {})) for name in chosen]


def _parametrize(cases: list, checks: list[Callable]):
    import pytest

    pairs = [(case, check) for case in cases for check in checks]
    return pytest.mark.parametrize("case, check", pairs, ids=[f"{case}-{check.__name__}" for case, check in pairs])


def modality_contract(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                      options: Mapping[str, tuple[dict[str, Any], list[Any]]] | None = None):
    """A pytest parametrisation of a ``test(case, check)`` over every modality case × every modality check."""
    return _parametrize(modality_cases(plugins, names, options), MODALITY_CHECKS)


def fusion_contract(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                    options: Mapping[str, dict[str, Any]] | None = None):
    """A pytest parametrisation of a ``test(case, check)`` over every fusion case × every fusion check."""
    return _parametrize(fusion_cases(plugins, names, options), FUSION_CHECKS)


def dataset_contract(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                     options: Mapping[str, dict[str, Any]] | None = None, root: Path = Path("data")):
    """A pytest parametrisation of a ``test(case, check)`` over dataset cases × dataset checks."""
    return _parametrize(dataset_cases(plugins, names, options, root), DATASET_CHECKS)


def metric_contract(plugins: Iterable[str] = (), names: Iterable[str] | None = None):
    """A pytest parametrisation of a ``test(case, check)`` over every metric (task functions, Metric classes, the
    built-ins) × metric checks."""
    return _parametrize(metric_cases(plugins, names), METRIC_CHECKS)


def sampler_contract(plugins: Iterable[str] = (), names: Iterable[str] | None = None,
                     options: Mapping[str, dict[str, Any]] | None = None):
    """A pytest parametrisation of a ``test(case, check)`` over every subset sampler × sampler checks."""
    return _parametrize(sampler_cases(plugins, names, options), SAMPLER_CHECKS)
