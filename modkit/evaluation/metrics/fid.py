"""Fréchet distance between generated and real images (FID: Heusel et al. 2017; per subset as in MoPoE, Sutter et
al. 2021, and MMVAE+, Palumbo et al. 2023), conditional per given subset and unconditional from the prior.

Generated images come from z ~ q(z | X_S) (the same draws as the sampled coherence) for every evaluated subset
that leaves the target out, and from z ~ p(z) (as many as real test images); each is decoded to its
likelihood's mean. Real images are the test split's. The Fréchet distance of two Gaussians fitted to the
feature sets, ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2}), is torchmetrics' ``FrechetInceptionDistance``.

The features are the standard Inception-v3 pool3 (2048) when torch-fidelity is installed and its weights file
is present locally (``inception_weights_path()``; nothing is downloaded), else the dataset judge's features
(its standardiser and PCA, fitted on real data), else the raw pixels. The network is part of every key
(``fid/inception-v3/...``, ``fid/judge-features/...``): numbers from different networks are never comparable.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Table, Text

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's release of the TF-ported FID Inception-v3


def inception_weights_path():
    """Where modkit looks for the FID Inception weights: ``$MODKIT_CACHE_DIR/weights/`` (default ~/.cache/modkit)."""
    from modkit.evaluation.judges import cache_dir

    return cache_dir().parent / "weights" / INCEPTION_FILE


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two (n, F) feature sets, by torchmetrics."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Identity(real.shape[1]), reset_real_features=True)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return float(fid.compute())


class _Identity(torch.nn.Module):
    """Features already extracted: torchmetrics' FID takes a module, and these are its outputs."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def is_image(data: Any) -> bool:
    return isinstance(data, Tensor) and data.is_floating_point() and data.dim() == 4


class FID(BaseMetric):
    name = "fid"
    group = "fid"
    keys = ("fid",)
    needs = frozenset()
    description = ("FID (Heusel et al. 2017; per given subset as in MoPoE and MMVAE+): the Fréchet distance between "
                   "Gaussians fitted to features of real test images and of images generated from z ~ q(z | X_S) for "
                   "each subset leaving the target out (one draw per test item), and from z ~ p(z) (as many as real "
                   "images). Features: Inception-v3 pool3 when its weights are present locally, else the dataset "
                   "judge's features, named in every key. Lower is better; 0 for identical feature statistics.")

    def start(self, context: EvalContext) -> None:
        from modkit.evaluation.judges import judges_for

        self.context = context
        self.real: dict[str, list[Tensor]] = {}
        self.fake: dict[tuple[int, str], list[Tensor]] = {}
        self.network, self.extractors = None, {}
        self.problem = None
        try:
            import torchmetrics  # noqa: F401
        except ImportError:
            self.problem = "not computed: FID needs torchmetrics (pip install torchmetrics)"
            return
        probe = context.test.__getitems__([0]) if len(context.test) else None
        self.targets = [t for t in context.names if probe is not None and is_image(probe.data[t])]
        if not self.targets:
            return
        inception = _inception(context.model.device)
        if inception is not None:
            self.network = "inception-v3"
            self.extractors = {t: inception for t in self.targets}
            return
        judges = judges_for(context) if context.attributes else None
        reducers = {t: judges.reducers[t] for t in self.targets if judges is not None and t in judges.reducers}
        if len(reducers) == len(self.targets):
            self.network = "judge-features"
            model = context.model
            self.extractors = {t: (lambda x, t=t: torch.as_tensor(
                reducers[t].transform(model.modalities[t].judge_features(x).detach().cpu().numpy()))) for t in self.targets}
        else:
            self.network = "pixels"
            self.extractors = {t: (lambda x: x.detach().flatten(1).double().cpu()) for t in self.targets}

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is not None or not self.extractors or batch.posterior is None:
            return
        from modkit.evaluation.metrics.coherence import posterior_draw

        model, names, masks = self.context.model, self.context.names, self.context.masks
        z = posterior_draw(batch.posterior, self.context.labels, self.context.settings.seed, int(batch.positions[0]), 0)
        for t in self.targets:
            j = names.index(t)
            present = batch.batch.present[:, j]
            if present.any():
                self.real.setdefault(t, []).append(self.extractors[t](batch.batch.data[t][present]))
            modality = model.modalities[t]
            for s in range(len(masks)):
                if masks[s, j]:
                    continue  # the target given: a reconstruction, not a generation
                rows = batch.usable[s]
                if rows.any():
                    self.fake.setdefault((s, t), []).append(self.extractors[t](modality.predict(modality.decode(z[s][rows]))))

    def compute(self) -> dict[str, Any]:
        if self.problem:
            return {"fid": {"not_applicable": self.problem}}
        if not self.extractors:
            return {}
        from modkit.evaluation.likelihood import prior_of

        model, labels = self.context.model, self.context.labels
        out: dict[str, Any] = {"network": self.network, "conditional": {}, "unconditional": {}, "items": {}}
        prior = prior_of(model)
        for t in self.targets:
            if not self.real.get(t):
                continue
            real = torch.cat(self.real[t])
            out["items"][f"real {t}"] = len(real)
            for (s, target), parts in sorted(self.fake.items()):
                fake = torch.cat(parts)
                if target == t and len(fake) > 1:
                    out["conditional"][f"{labels[s]}->{t}"] = frechet_distance(real, fake)
                    out["items"][f"{labels[s]}->{t}"] = len(fake)
            if prior is not None:
                generator = torch.Generator(device=model.device).manual_seed(self.context.settings.seed + 7919)
                modality, fakes = model.modalities[t], []
                with torch.no_grad():
                    for start in range(0, len(real), self.context.settings.batch_size):
                        n = min(self.context.settings.batch_size, len(real) - start)
                        z = prior.rsample(n, generator=generator) if _takes_generator(prior) else prior.rsample(n)
                        fakes.append(self.extractors[t](modality.predict(modality.decode(z))))
                out["unconditional"][f"prior->{t}"] = frechet_distance(real, torch.cat(fakes))
                out["items"][f"prior->{t}"] = len(real)
        return {"fid": out}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        fid = result.get("fid", {})
        network = fid.get("network")
        if not network:
            return {}
        out = {}
        for key, value in {**fid.get("conditional", {}), **fid.get("unconditional", {})}.items():
            given = key.split("->")[0]
            if "+" not in given:  # each modality alone, and the prior: the headline numbers
                out[f"fid/{network}/{key}"] = value
        return out

    def report(self, result: dict) -> list[Block]:
        fid = result.get("fid", {})
        if not fid.get("network"):
            return [Text(["## FID", "", fid["not_applicable"], ""])] if fid.get("not_applicable") else []
        rows = [[k, v, fid.get("items", {}).get(k)] for k, v in {**fid.get("conditional", {}), **fid.get("unconditional", {})}.items()]
        return [Text(["## FID", "", f"Fréchet distance on **{fid['network']}** features between real test images and images "
                      "generated from z ~ q(z | X_S) (or p(z)); lower is better. Only numbers on the same features compare.", ""]),
                Table(["generated from -> target", f"FID ({fid['network']})", "generated images"], rows)]


def _takes_generator(prior) -> bool:
    import inspect

    try:
        return "generator" in inspect.signature(prior.rsample).parameters
    except (TypeError, ValueError):
        return False


def _inception(device):
    """torchmetrics' FID Inception-v3 on the local weights file, or None (never downloads)."""
    path = inception_weights_path()
    if not path.is_file():
        return None
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError:
        return None
    if not _TORCH_FIDELITY_AVAILABLE:
        return None
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)).to(device)

    def features(x: Tensor) -> Tensor:
        x = x.clamp(0, 1)
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x[:, :3]
        return net((x * 255).to(torch.uint8)).reshape(len(x), -1).double().cpu()

    return features


METRIC = FID
