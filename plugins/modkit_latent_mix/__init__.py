"""Latent mixing (LCMVAE): one joint encoder over the concatenated per-modality features.

Each modality contributes ``Modality.features(x)`` (a frozen pretrained encoder exposes itself there);
the mixer sees them side by side, zeros in place of a missing or dropped modality plus the presence
bits, and outputs q(z | X). Options: modality dropout, feature masking, an auxiliary loss that
reconstructs one modality's features from z (weight δ), LCMVAE's pre-concatenation convolution over an
image's token grid (``pre_concat``), and a downstream mode that swaps one
modality's decoder for a task head and fine-tunes the mixer on that task.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from modkit import (Batch, Engine, Fusion, FusionConfig, GaussianHead, LossOutput, ModkitError, RecipeError, SubsetPlan,
                    hookimpl, load_weights, mlp)
from modkit.distributions import DiagGaussian, Experts, kl_standard_normal, reparameterize


class DownstreamConfig(BaseModel):
    """Fine-tune for a task: predict ``task`` from the other modalities through a fresh head on z."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(..., description="the modality to predict; its decoder is swapped for the task head")
    head: list[int] | Literal["decoder"] = Field([128], description="hidden sizes of a fresh MLP head z → task output, or "
                                                                    "'decoder': the task modality's own decoder is the head")
    init_from: str | None = Field(None, description="a pretraining run directory whose weights start the model (read once, "
                                                    "when the new run starts: the new run never needs it again)")
    freeze_features: bool = Field(True, description="keep the modalities' feature encoders fixed; the mixer is fine-tuned")
    kl: bool = Field(False, description="keep β·KL(q(z|X) ‖ N(0, I)) in the fine-tuning loss")


class PreConcatConfig(BaseModel):
    """LCMVAE's pre-concatenation layer: a convolution over a modality's token grid before the mixer."""

    model_config = ConfigDict(extra="forbid")
    channels: int = Field(32, ge=1, description="output channels of the convolution over each token grid")
    kernel: int = Field(3, ge=1, description="kernel side (odd keeps the grid's size)")


class LatentMixConfig(FusionConfig):
    hidden: list[int] = Field([256], min_length=1, description="mixer MLP over the concatenated features")
    modality_dropout: float = Field(0.0, ge=0, lt=1, description="chance to hide each present modality from the mixer (one always stays)")
    feature_mask: float = Field(0.0, ge=0, lt=1, description="fraction of feature entries zeroed while training (masking)")
    aux_target: str | None = Field(None, description="modality whose features z must also reconstruct (LCMVAE: the caption)")
    aux_weight: float = Field(0.0, ge=0, description="δ, the weight of the auxiliary mean-squared error")
    aux_hidden: list[int] = Field([256], description="hidden sizes of the auxiliary head z → features")
    detach_features: bool = Field(False, description="no gradient into the feature encoders (frozen, as in LCMVAE phase 2)")
    pre_concat: PreConcatConfig | None = Field(None, description="a conv over each token-grid feature (an image with backbone.tokens) "
                                                                 "before the concatenation")
    downstream: DownstreamConfig | None = None


class LatentMix(Fusion):
    """LCMVAE latent mixing: a joint encoder over concatenated modality features, with dropout and masking."""

    Config = LatentMixConfig
    uses_sampler = False

    def __init__(self, modalities, latent_dim: int, config: LatentMixConfig):
        super().__init__(modalities, latent_dim, config)
        dims = []
        for name, modality in modalities.items():
            if not isinstance(getattr(modality, "feature_dim", None), int):
                raise RecipeError(f"modalities.{name}", f"{type(modality).__name__} has no feature_dim; latent_mix mixes features")
            dims.append(modality.feature_dim)
        self.feature_dims = dims
        self.pre_concat = nn.ModuleDict()
        mixed = list(dims)
        if config.pre_concat is not None:
            pc = config.pre_concat
            for i, (name, modality) in enumerate(modalities.items()):
                shape = getattr(modality, "feature_shape", None)
                if shape is None:
                    continue
                c, gh, gw = shape
                conv = nn.Conv2d(c, pc.channels, pc.kernel, padding=pc.kernel // 2)
                with torch.no_grad():
                    out = conv(torch.zeros(1, c, gh, gw)).shape[1:]
                self.pre_concat[name] = nn.Sequential(nn.Unflatten(1, (c, gh, gw)), conv, nn.SiLU(), nn.Flatten(1))
                mixed[i] = math.prod(out)
            if not len(self.pre_concat):
                raise RecipeError("model.fusion.pre_concat", "no modality gives a token grid (an image with backbone: {tokens: true})")
        self.mixer = mlp([sum(mixed) + len(mixed), *config.hidden], final_activation=True)
        self.gaussian = GaussianHead(config.hidden[-1], latent_dim)
        self.aux_index = self._index(config.aux_target, "model.fusion.aux_target") if config.aux_target else None
        if self.aux_index is not None:
            self.aux_head = mlp([latent_dim, *config.aux_hidden, dims[self.aux_index]])
        self.task_index = None
        if config.downstream is not None:
            self.task_index = self._index(config.downstream.task, "model.fusion.downstream.task")
            task = modalities[config.downstream.task]
            if config.downstream.head != "decoder":  # 'decoder': the modality's own (a convolutional image decoder)
                with torch.no_grad():
                    out_shape = tuple(task.decode(torch.zeros(1, latent_dim)).shape[1:])
                task.set_task_head(nn.Sequential(mlp([latent_dim, *config.downstream.head, math.prod(out_shape)]),
                                                 nn.Unflatten(1, out_shape)))

    def _index(self, name: str, key: str) -> int:
        if name not in self.names:
            raise RecipeError(key, f"'{name}' is not a modality of this recipe ({', '.join(self.names)})")
        return self.names.index(name)

    def initialize(self, model: Engine) -> None:
        """A new fine-tuning run starts from its pretraining run (``downstream.init_from``): the modality
        encoders/decoders and the mixer (not the aux head) are copied in here, once; from then on they live in
        this run's own checkpoints, so the pretraining run may move or go."""
        source = self.config.downstream.init_from if self.config.downstream is not None else None
        if source:
            self._load_pretrained(model.modalities, Path(source))

    def _load_pretrained(self, modalities, run_dir: Path) -> None:
        """Start from a pretraining run: its modality encoders/decoders and its mixer (not its aux head)."""
        key = "model.fusion.downstream.init_from"
        if not run_dir.is_dir():
            raise RecipeError(key, f"run directory {run_dir} not found")
        try:
            state = load_weights(run_dir)
        except ModkitError as exc:
            raise RecipeError(key, str(exc)) from None
        try:
            for name, modality in modalities.items():
                prefix = f"modalities.{name}."
                missing, unexpected = modality.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                                               strict=False)
                missing = [k for k in missing if not k.startswith("task_head.")]  # the head is new: it starts fresh
                if missing or unexpected:
                    raise RuntimeError(f"modality '{name}' does not match (first: {(missing + unexpected)[0]})")
            parts = ("mixer", "gaussian", "pre_concat")
            mine = {k.removeprefix("fusion."): v for k, v in state.items() if k.startswith(tuple(f"fusion.{p}." for p in parts))}
            expected = {f"{p}.{k}" for p in parts for k in getattr(self, p).state_dict()}
            missing = sorted(expected - set(mine))
            if missing:
                raise RuntimeError(f"it has no latent_mix mixer (missing {missing[0]})")
            self.load_state_dict(mine, strict=False)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise RecipeError(key, f"{run_dir} does not fit this recipe: {first}") from None

    # -- encoding -------------------------------------------------------------------------------
    def features(self, model: Engine, batch: Batch) -> list[Tensor]:
        """Every modality's features (B, F_m); the downstream task's are zeros (the mixer never sees it)."""
        feats = []
        frozen = self.config.detach_features or (self.config.downstream is not None and self.config.downstream.freeze_features)
        for i, name in enumerate(model.names):
            if i == self.task_index:
                feats.append(batch.present.new_zeros(len(batch), self.feature_dims[i], dtype=torch.float32))
                continue
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                feats.append(model.modalities[name].features(batch.data[name]).float())
        return feats

    def mix(self, feats: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | the modalities in ``mask``): features (B, F_m) and a (..., B, N) mask → (..., B, D) mu, logvar."""
        if self.task_index is not None:
            mask = mask.clone()
            mask[..., self.task_index] = False
        feats = [self.pre_concat[name](f) if name in self.pre_concat else f for name, f in zip(self.names, feats)]
        parts = [torch.where(mask[..., i:i + 1], f, 0.0) for i, f in enumerate(feats)]
        h = self.mixer(torch.cat([*parts, mask.to(parts[0].dtype)], dim=-1))
        return self.gaussian(h)

    def encode(self, model: Engine, batch: Batch) -> Experts:
        """Features once; the unimodal experts q(z | x_i) are the mixer given modality i alone."""
        feats = self.features(model, batch)
        singles = torch.eye(len(feats), dtype=torch.bool, device=batch.present.device)
        mu, logvar = self._posterior(feats, batch.present, singles)
        return Experts(mu, logvar, batch.present, {"features": feats})

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """The mixer given the subset's present modalities (never the downstream task); N(0, I) if none."""
        if not experts.extra or "features" not in experts.extra:
            raise TypeError("latent_mix posteriors need the features from LatentMix.encode (use model.encode)")
        return DiagGaussian(*self._posterior(experts.extra["features"], experts.present, subsets))

    def _posterior(self, feats: list[Tensor], present: Tensor, subsets: Tensor) -> tuple[Tensor, Tensor]:
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & present.unsqueeze(0)  # (S, B, N)
        if self.task_index is not None:
            mask = mask.clone()
            mask[..., self.task_index] = False
        mu, logvar = self.mix(feats, mask)
        some = mask.any(-1, keepdim=True)
        return torch.where(some, mu, 0.0), torch.where(some, logvar, 0.0)

    # -- training -------------------------------------------------------------------------------
    def input_mask(self, present: Tensor) -> Tensor:
        """Which modalities the mixer sees: the present ones, each hidden with chance p (never all of a sample's)."""
        p = self.config.modality_dropout
        if not self.training or p == 0:
            return present
        keep = present & (torch.rand(present.shape, device=present.device) >= p)
        rescue = torch.nn.functional.one_hot(torch.where(present, torch.rand(present.shape, device=present.device), -1.0).argmax(-1),
                                             present.shape[1]).bool()
        return torch.where(keep.any(-1, keepdim=True), keep, rescue)

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        feats = self.features(model, batch)
        present = batch.present
        clean = feats
        if self.training and self.config.feature_mask > 0:
            feats = [f * (torch.rand_like(f) >= self.config.feature_mask) for f in feats]
        visible = present
        if self.task_index is not None:  # the task is never an input, so dropout must not keep it instead of one
            visible = present.clone()
            visible[:, self.task_index] = False
        mu, logvar = self.mix(feats, self.input_mask(visible))
        z = reparameterize(mu, logvar) if self.training else mu
        kl = kl_standard_normal(mu, logvar)
        n = len(batch)
        if self.task_index is not None:
            return self._downstream_loss(model, batch, z, kl, beta)
        lls = model.log_likelihoods(z.unsqueeze(0), batch)
        rec, per = model.present_reconstruction([ll[0] for ll in lls], present)  # (B,)
        terms: dict[str, Tensor] = {f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()}
        bound = rec - beta * kl
        if self.aux_index is not None:
            aux = self.aux_loss(z, clean[self.aux_index])
            aux = torch.where(present[:, self.aux_index], aux, 0.0)
            bound = bound - self.config.aux_weight * aux
            terms["aux"] = (aux.sum() / n).detach()
        loss = -bound.sum() / n
        terms.update(loss=loss.detach(), kl=(kl.sum() / n).detach())
        return LossOutput(loss, terms)

    def aux_loss(self, z: Tensor, target: Tensor) -> Tensor:
        """Mean squared error (per sample, averaged over feature dims) of the aux head's guess of ``target`` from z."""
        return ((self.aux_head(z) - target.detach()) ** 2).mean(-1)

    def _downstream_loss(self, model: Engine, batch: Batch, z: Tensor, kl: Tensor, beta: float) -> LossOutput:
        name = self.names[self.task_index]
        task = model.modalities[name]
        present = batch.present
        inputs = present.clone()
        inputs[:, self.task_index] = False
        valid = present[:, self.task_index] & inputs.any(-1)
        out = task.decode(z)
        ll = task.log_likelihood(out, batch.data[name]).float()
        bound = task.weight * ll - (beta * kl if self.config.downstream.kl else 0.0)
        n = len(batch)
        loss = -torch.where(valid, bound, 0.0).sum() / n
        terms = {"loss": loss.detach(), "kl": (torch.where(valid, kl, 0.0).sum() / n).detach(),
                 f"rec/{name}": (torch.where(valid, ll, 0.0).sum() / n).detach()}
        acc = task.accuracy(out, batch.data[name])
        if acc is not None:  # per-sample means, so epoch averages are exact: accuracy = correct / scored
            terms[f"correct/{name}"] = (torch.where(valid, acc, 0.0).sum() / n).detach()
            terms["scored"] = (valid.sum() / n).detach()
        return LossOutput(loss, terms)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("latent_mix", LatentMix)
