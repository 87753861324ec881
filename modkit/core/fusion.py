"""Fusion strategies: how unimodal experts combine into latents, and the objective on them.

A fusion is an ``nn.Module`` plugin. The engine hands it the model (to encode each present
modality once and decode each modality once) and a :class:`SubsetPlan`; it returns the loss. What a
fusion may call on the model is named by :class:`Engine`: the primitives, and nothing of the model's
inner workings, so the engine can change behind them.
PoE lives in the ``modkit_poe`` plugin; MoE, MoPoE, MEME, latent mixing and M2 plug in the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from modkit.core import gaussian
from modkit.core.gaussian import DiagGaussian, Experts, kl_standard_normal, product_of_experts
from modkit.core.private import PrivateLayout
from modkit.core.subsets import all_subsets, subset_validity
from modkit.errors import RecipeError

if TYPE_CHECKING:
    from modkit.core.batch import Batch
    from modkit.core.modality import Modality


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


@dataclass
class SubsetPlan:
    """The subsets of one step: ``mask`` (S, N) on the device, and per modality the subset rows that contain it.

    ``rows[i]`` indexes the subsets holding modality i (on the device); ``counts[i]`` is its length,
    known on the host so shapes never need a device sync. ``complete``, also known on the host, says the
    mask is :func:`all_subsets` in its order (MoPoE's KL then builds the subset sums by doubling).
    """

    mask: Tensor
    rows: list[Tensor]
    counts: list[int]
    complete: bool = False

    @classmethod
    def from_mask(cls, mask: Tensor, device: torch.device | str = "cpu") -> "SubsetPlan":
        mask = mask.to(torch.bool).cpu()
        n = mask.shape[1]
        complete = n <= 20 and mask.shape[0] == 2**n - 1 and torch.equal(mask, all_subsets(n))
        rows = [torch.nonzero(mask[:, i]).flatten() for i in range(n)]
        # from pinned memory a copy to the GPU is truly asynchronous; from pageable memory it waits for the stream
        pin = torch.device(device).type == "cuda"
        move = lambda t: (t.pin_memory() if pin else t).to(device, non_blocking=True)  # noqa: E731
        return cls(mask=move(mask), rows=[move(r) for r in rows], counts=[len(r) for r in rows], complete=complete)

    @property
    def n_subsets(self) -> int:
        return self.mask.shape[0]


@dataclass
class LossOutput:
    """The scalar to minimise and detached per-sample-mean terms for logging (``loss``, ``kl``, ``rec/<m>``, …)."""

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """What a fusion may use of the model it is handed (in ``loss``, ``encode`` and ``initialize``).

    :class:`~modkit.core.engine.MultimodalVAE` is the one implementation; ``tests/core/test_engine_protocol.py``
    runs every registered fusion against a model that exposes these members and nothing else. Everything
    else on the model (its ``fusion``, ``posterior``, ``decode``, ``device``, ``latent_dim``, the ``nn.Module``
    machinery) is for the code around a run, not for the objective; a fusion knows its own ``latent_dim``.
    """

    #: the modalities' names, in the order of the N axis of :class:`Experts` and of ``present``
    names: list[str]
    #: name → modality plugin (its ``weight``, ``features``, ``encode``/``decode`` for a fusion's own passes)
    modalities: Mapping[str, "Modality"]
    #: the objective of the current training stage (a stage's ``objective``, by default its name; see
    #: :meth:`Fusion.stages`), or None: training in one stage, or not training (evaluation, a loaded model)
    stage: str | None

    def encode(self, batch: "Batch") -> Experts:
        """The experts the fusion works from (:meth:`Fusion.encode`)."""
        ...

    def encode_experts(self, batch: "Batch") -> Experts:
        """Each modality's own encoder once over the whole batch: (N, B, D) experts, absent ones masked."""
        ...

    def encode_with_features(self, batch: "Batch") -> tuple[dict[str, Tensor], Experts]:
        """Each encoder once, giving both its (B, feature_dim) features and its expert."""
        ...

    def log_likelihoods(self, z: Tensor, batch: "Batch", rows: Sequence[Tensor | None] | None = None,
                        counts: Sequence[int] | None = None) -> list[Tensor | None]:
        """Decode each modality once on the rows of ``z`` (R, B, D) it needs and score its data: (R_i, B) each."""
        ...

    def present_reconstruction(self, lls: Sequence[Tensor | None], present: Tensor,
                               all_present: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ_m λ_m log p(x_m | z) over the modalities each sample has, from :meth:`log_likelihoods`' terms."""
        ...

    def weighted_reconstruction(self, z: Tensor, batch: "Batch",
                                plan: SubsetPlan | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ_m λ_m log p(x_m | z) for each row of ``z`` over the modalities each row's subset holds."""
        ...


class Fusion(nn.Module):
    """Base class for fusion plugins."""

    Config: ClassVar[type[FusionConfig]] = FusionConfig
    #: False for strategies that ignore the subset sampler (e.g. MoE uses unimodal posteriors only)
    uses_sampler: ClassVar[bool] = True
    #: the stage objectives :meth:`loss` tells apart through ``model.stage`` (e.g. ``("joint", "unimodal")``); empty:
    #: the fusion has one objective, and a recipe's stages may only freeze parts of it (see :meth:`stages`)
    objectives: ClassVar[tuple[str, ...]] = ()
    #: with private latents (:meth:`private_latents`): True when they are each modality's own latent under the shared
    #: (top) one, which the modality never sees (Nexus: a modality is built at P dims); False when they sit beside it
    hierarchical: ClassVar[bool] = False

    def __init__(self, modalities: Mapping[str, "Modality"], latent_dim: int, config: FusionConfig):
        """``modalities`` are the model's modality plugins, in order: read their shapes and ``feature_dim``
        to size the fusion's own networks; do not keep them (the model owns them and passes itself to ``loss``)."""
        super().__init__()
        self.names = list(modalities)
        self.register_buffer("_prior_zeros", torch.zeros(latent_dim), persistent=False)  # follows .to(device)
        self.latent_dim = latent_dim
        self.config = config
        #: where the shared and each modality's private dimensions sit (None: one shared latent, no private ones)
        self.layout: PrivateLayout | None = None
        private = type(self).private_latents(config)
        if private:
            shared = latent_dim - len(self.names) * private
            if shared < 1:
                raise RecipeError("model.fusion", f"a latent of {latent_dim} leaves no shared dimensions beside "
                                                  f"{len(self.names)} × {private} private ones")
            self.layout = PrivateLayout(shared, private, len(self.names), type(self).hierarchical)
            try:
                self.layout.install(modalities)
            except ValueError as exc:
                raise RecipeError("model.fusion", str(exc)) from None

    @classmethod
    def latent_width(cls, modalities: Mapping[str, "Modality"], latent_dim: int, config: FusionConfig) -> int:
        """How wide the latent vector the engine carries is, given ``model.latent_dim`` and the modalities as
        constructed at that width (not yet prepared: data-dependent sizes, such as a tokenizer's vocabulary, are
        not known here). Default: ``latent_dim``. A fusion that carries more than its Gaussian part beside it
        (M2's y map beside z_c) may size it here from its own options, so a recipe does not spell out the sum;
        the builder then constructs the modalities at the returned width and prepares each of them once."""
        return latent_dim

    @classmethod
    def private_latents(cls, config: FusionConfig) -> int:
        """How many private latent dimensions each modality has beside the shared ones (MMVAE+, DMVAE); default 0.

        When it is P > 0, ``model.latent_dim`` is the shared size D: each modality is built at D + P (its expert is
        [shared; private], its decoder reads [shared, its own private]), the latent the model carries is
        D + N · P wide, laid out as :attr:`layout` says, and the fusion's ``latent_dim`` is that width. With
        :attr:`hierarchical`, each modality is built at P alone and D is the top latent's size."""
        return 0

    @classmethod
    def stages(cls, config: FusionConfig, epochs: int) -> list[dict[str, Any]] | None:
        """The stages this fusion trains in when the recipe gives no ``train.stages``, over ``epochs`` in all: a list
        of ``{name, epochs, freeze, objective}`` (as a recipe's ``train.stages`` entries; ``objective`` defaults to
        the name, which must then be one of :attr:`objectives`), whose epochs add up to ``epochs``. Default: None,
        one stage. A recipe's ``train.stages`` replaces them. Raise :class:`RecipeError` naming the option when the
        split is impossible (too few epochs).

        In each stage the trainer freezes the named parameters (no gradient, left out of that stage's fresh
        optimizer, so no weight decay or momentum moves them) and sets ``model.stage`` to the stage's objective
        before :meth:`loss` is called; the fusion reads it there and nowhere else."""
        return None

    @classmethod
    def modality_width(cls, config: FusionConfig, latent_dim: int) -> int:
        """The latent size each modality is built at, given ``model.latent_dim``: itself, or with private latents
        D + P beside the shared part, P under it (:attr:`hierarchical`)."""
        private = cls.private_latents(config)
        if not private:
            return latent_dim
        return private if cls.hierarchical else latent_dim + private

    @classmethod
    def example(cls) -> dict[str, Any]:
        """Small recipe options (besides ``type``) the contract tests (:mod:`modkit.testing`) build this fusion
        with. Default: none, the Config's defaults; override when an option is required."""
        return {}

    def encode(self, model: "Engine", batch: "Batch") -> Experts:
        """The experts :meth:`posterior` combines (``model.encode`` calls this). Default: each modality's own
        encoder. A fusion that encodes jointly (latent mixing over features, M2's classifier) overrides it and
        may return an :class:`Experts` subclass carrying more; it must call ``model.encode_experts``, never
        ``model.encode``, to get the plain experts."""
        return model.encode_experts(batch)

    def loss(self, model: "Engine", batch: "Batch", plan: SubsetPlan, beta: float) -> LossOutput:
        raise NotImplementedError

    def initialize(self, model: "Engine") -> None:
        """Called once when a new run starts training, never when one is resumed or loaded: the place to
        start from another run's weights (copied into this run's checkpoints, so the new run directory
        never needs the other one again). Default: nothing."""

    #: why :meth:`prior` is None, when it is (printed as "not applicable: the <Fusion> fusion <this>")
    no_prior_reason: str = ("defines no unconditional prior p(z) "
                            "(scoring under N(0, I) would measure a prior the model never used)")

    #: why the model has no tractable density over the latent it carries, when it has none (None: it has one). Then
    #: the importance-sampled likelihoods and the test ELBO are reported as "not applicable: the <Fusion> fusion
    #: <this>", while everything that only draws and decodes (generation, coherence, FID) still runs
    no_likelihood_reason: str | None = None

    def prior(self):
        """p(z) as a distribution with ``rsample``/``log_prob``/``mean``; default N(0, I).

        Fusions with another prior (MMVAE's learnable or Laplace prior) override this; the test ELBO
        and the importance-sampled likelihoods score z under it. A fusion whose model defines no
        unconditional p(z) (MEME: each modality's prior is the other's encoder) returns None, and
        everything that needs one (test ELBO, joint coherence, likelihoods, prior samples) is reported
        as not applicable instead of being scored under an N(0, I) the model never used.
        """
        zeros = self._prior_zeros
        return DiagGaussian(zeros, zeros)

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """q(z | the modalities of each subset row ∩ present): (S, B, D). Default: PoE with the prior expert."""
        return DiagGaussian(*product_of_experts(experts, subsets, prior=True))


def subset_gaussian_elbo(model: "Engine", batch: "Batch", plan: SubsetPlan, mu: Tensor, logvar: Tensor,
                         beta: float) -> LossOutput:
    """Σ over the plan's subsets of ELBO(X_s), each with its own Gaussian posterior ``mu``/``logvar`` (S, B, D).

    A subset counts for a sample only if every modality in it is present; each decoder runs once on
    the subset rows that contain its modality. Shared by the product-of-experts fusions (MVAE, MVAE-Q).
    """
    valid = subset_validity(plan.mask, batch.present, bool(batch.all_present)).float()  # (S, B)
    z = gaussian.reparameterize(mu, logvar)  # looked up on the module: tests switch the noise off there
    rec, per = model.weighted_reconstruction(z, batch, plan)
    kl = kl_standard_normal(mu, logvar)
    n = len(batch)
    loss = -((rec - beta * kl) * valid).sum() / n
    terms = {"loss": loss.detach(), "kl": ((kl * valid).sum() / n).detach()}
    for i, name in enumerate(model.names):
        if name in per:
            terms[f"rec/{name}"] = ((per[name] * valid[plan.rows[i]]).sum() / n).detach()
    return LossOutput(loss, terms)

