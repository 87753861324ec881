"""M2 (Kingma et al., 2014), and its fully convolutional use for segmentation: a semi-supervised VAE.

One modality, the *target* (a label, or a per-pixel mask), is a partially observed discrete latent y.
The latent is z = [z_c, y]: the last |y| dims hold the (relaxed) one-hot code, so every decoder sees
p(x | z_c, y). A classifier q(y|x) over the other modalities' features supplies y where the target is
missing, as a Gumbel-softmax sample with an annealed temperature; where it is present, the true
one-hot is used and α·log q(y|x) is added.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from modkit import (Batch, Engine, Fusion, FusionConfig, GaussianHead, LossOutput, RecipeError, SubsetPlan, hookimpl, mlp,
                    over_leading)
from modkit.distributions import DiagGaussian, Experts, kl_standard_normal, reparameterize

from modkit_m2.relaxed import annealed_temperature, entropy, one_hot, relaxed_one_hot, uniform_log_prior
from modkit_m2.spatial import MapDecoder, MapEncoder, PixelClassifier, ReadMap

#: log-variance of the y dims in a posterior: y is given (or the classifier's mean), not sampled
Y_LOGVAR = -10.0


class TemperatureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float = Field(1.0, gt=0, description="τ at step 0")
    min: float = Field(0.5, gt=0, description="τ never goes below this")
    rate: float = Field(3e-4, ge=0, description="τ = max(min, start·exp(−rate·step)), step = optimiser steps")


class M2Config(FusionConfig):
    target: str | None = Field(None, description="the discrete modality treated as the latent y (default: the only categorical one)")
    alpha: float = Field(10.0, ge=0, description="α, the weight of the supervised term log q(y|x) on labelled samples")
    hidden: list[int] = Field([256], min_length=1, description="hidden sizes of the classifier q(y|x) and of q(z_c|x, y)")
    temperature: TemperatureConfig = TemperatureConfig()
    hard: bool = Field(False, description="straight-through one-hot samples instead of relaxed ones")
    objective: Literal["m2", "supervised"] = Field("m2", description="'supervised': only α·log q(y|x) on labelled samples (a baseline)")
    spatial: bool = Field(False, description="fully convolutional (segmentation): y a K×H×W map kept spatial through "
                                             "classifier, q(z_c|x, y) and p(x|z_c, y); one image input of the mask's size")
    channels: list[int] = Field([32, 64], min_length=1, description="spatial: conv widths (classifier, z_c encoder, image decoder)")
    z_dim: int | None = Field(None, ge=1, description="the size of z_c: the latent is then z_dim + |y| wide and model.latent_dim "
                                                     "is not used (default: z_c is model.latent_dim − |y|)")


class M2(Fusion):
    """M2 semi-supervised VAE: the target modality is a discrete latent y; q(y|x) with α-weighted supervision."""

    Config = M2Config
    uses_sampler = False

    @classmethod
    def latent_width(cls, modalities, latent_dim: int, config: M2Config) -> int:
        """``z_dim`` + |y| when ``z_dim`` is set (a 5-class 32×32 mask: z_dim + 5120), else ``model.latent_dim``."""
        if config.z_dim is None:
            return latent_dim
        return config.z_dim + math.prod(cls._y_shape(modalities[cls._choose_target(modalities, config.target)], latent_dim))

    @staticmethod
    def _y_shape(target, latent_dim: int) -> tuple[int, ...]:
        """The target's decoded shape (one-hot code per position), read from its decoder."""
        with torch.no_grad():
            return tuple(target.decode(torch.zeros(1, latent_dim)).shape[1:])

    def __init__(self, modalities, latent_dim: int, config: M2Config):
        super().__init__(modalities, latent_dim, config)
        self.target = self._choose_target(modalities, config.target)
        target = modalities[self.target]
        self.y_shape = self._y_shape(target, latent_dim)
        class_dim = target.likelihood.class_dim
        self.class_pos = class_dim + len(self.y_shape) if class_dim < 0 else class_dim - 1  # within y_shape
        self.num_classes = self.y_shape[self.class_pos]
        self.y_dim = math.prod(self.y_shape)
        if self.y_dim >= latent_dim:
            raise RecipeError("model.latent_dim", f"must exceed the {self.y_dim} dims m2 reserves for '{self.target}' (z = [z_c, y]): "
                                                  f"set model.fusion.z_dim (the size of z_c) instead")
        if config.z_dim is not None and latent_dim != config.z_dim + self.y_dim:
            raise RecipeError("model.fusion.z_dim", f"the latent is {latent_dim} wide, not z_dim + |y| = {config.z_dim + self.y_dim}: "
                                                    "build m2 through the recipe builder (Fusion.latent_width)")
        self.inputs = [i for i, n in enumerate(self.names) if n != self.target]
        if not self.inputs:
            raise RecipeError("model.fusion", "m2 needs at least one modality besides its target")
        self.t_index = self.names.index(self.target)
        self.zc_dim = latent_dim - self.y_dim
        if config.spatial:
            self._build_spatial(modalities)
        else:
            in_dim = sum(modalities[self.names[i]].feature_dim for i in self.inputs) + len(self.inputs)
            self.classifier = mlp([in_dim, *config.hidden, self.y_dim])
            self.z_encoder = mlp([in_dim + self.y_dim, *config.hidden], final_activation=True)
            self.z_head = GaussianHead(config.hidden[-1], self.zc_dim)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def _build_spatial(self, modalities) -> None:
        """The fully convolutional networks, and the decoders they replace (through the public ``set_task_head``)."""
        if len(self.y_shape) != 3 or self.class_pos != 0:
            raise RecipeError("model.fusion.spatial", f"needs a per-pixel target of shape (K, H, W); '{self.target}' decodes to {self.y_shape}")
        k, h, w = self.y_shape
        if len(self.inputs) != 1:
            raise RecipeError("model.fusion.spatial", "needs exactly one input modality (the image) besides the target")
        name = self.names[self.inputs[0]]
        image = modalities[name]
        shape = tuple(getattr(image, "shape", ()))
        if len(shape) != 3 or shape[1:] != (h, w):
            raise RecipeError("model.fusion.spatial", f"the input '{name}' must be (C, {h}, {w}) data like the target; it is {shape or 'not an image'}")
        c = shape[0]
        self.classifier = PixelClassifier(c, k, self.config.channels)
        self.z_map = MapEncoder(c + k, h, w, self.config.channels, self.zc_dim)
        image.set_task_head(MapDecoder(self.zc_dim, k, image.decode(torch.zeros(1, self.latent_dim)).shape[1], h, w, self.config.channels))
        modalities[self.target].set_task_head(ReadMap(self.zc_dim, self.y_shape))

    @staticmethod
    def _choose_target(modalities, name: str | None) -> str:
        discrete = [n for n, m in modalities.items() if hasattr(m.likelihood, "class_dim")]
        if name is None:
            if len(discrete) != 1:
                raise RecipeError("model.fusion.target", f"name the discrete modality that is y (categorical ones: {', '.join(discrete) or 'none'})")
            return discrete[0]
        if name not in modalities:
            raise RecipeError("model.fusion.target", f"'{name}' is not a modality of this recipe ({', '.join(modalities)})")
        if name not in discrete:
            raise RecipeError("model.fusion.target", f"'{name}' is not discrete (m2 needs a categorical likelihood with a class axis)")
        return name

    # -- pieces -------------------------------------------------------------------------------
    @property
    def tau(self) -> Tensor:
        t = self.config.temperature
        return annealed_temperature(self.step, t.start, t.min, t.rate)

    def input_features(self, model: Engine, batch: Batch) -> list[Tensor]:
        if self.config.spatial:  # the image itself: the classifier is fully convolutional
            return [batch.data[self.names[self.inputs[0]]].float()]
        return [model.modalities[self.names[i]].features(batch.data[self.names[i]]).float() for i in self.inputs]

    def _inputs(self, feats: list[Tensor], mask: Tensor) -> Tensor:
        """Features with zeros for absent inputs, and the presence bits: (..., B, F_in); spatial: the image (..., B, C, H, W)."""
        if self.config.spatial:
            return torch.where(mask[..., 0].view(*mask.shape[:-1], 1, 1, 1), feats[0], 0.0)
        parts = [torch.where(mask[..., j:j + 1], f, 0.0) for j, f in enumerate(feats)]
        return torch.cat([*parts, mask.to(parts[0].dtype)], dim=-1)

    def classify(self, h: Tensor) -> Tensor:
        """Logits of q(y|x): (..., F_in) → (..., *y_shape); spatial: (..., C, H, W) → (..., K, H, W)."""
        if self.config.spatial:
            return over_leading(self.classifier, h, event_dims=3)
        return self.classifier(h).reshape(*h.shape[:-1], *self.y_shape)

    def target_code(self, y_data: Tensor) -> tuple[Tensor, Tensor]:
        """Target ids → one-hot codes (B, *y_shape) and where they are known (broadcastable): ids outside
        0..K−1 (a mask's ignore_index) are unknown there, and q(y|x) fills them in like a missing target."""
        known = (y_data >= 0) & (y_data < self.num_classes)
        cax = 1 + self.class_pos
        return one_hot(torch.where(known, y_data, 0), self.num_classes, cax), known.unsqueeze(cax)

    def encode_zc(self, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_c | x, y): inputs (..., F_in) and codes (..., *y_shape) → mu, logvar (..., D − |y|);
        spatial: the image and the map concatenated on channels."""
        if self.config.spatial:
            both = torch.cat([h, y.to(h.dtype)], dim=-3)
            mu, logvar = self.z_map(both.reshape(-1, *both.shape[-3:]))
            return mu.reshape(*both.shape[:-3], -1), logvar.reshape(*both.shape[:-3], -1)
        return self.z_head(self.z_encoder(torch.cat([h, y.flatten(h.dim() - 1)], dim=-1)))

    # -- the objective --------------------------------------------------------------------------
    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        cfg = self.config
        present, n = batch.present, len(batch)
        x_present = present[:, self.inputs]
        has_x, labelled = x_present.any(-1), present[:, self.t_index]
        h = self._inputs(self.input_features(model, batch), x_present)
        logits = self.classify(h)  # (B, *y_shape)
        cax = 1 + self.class_pos
        y_data = batch.data[self.target]
        target = model.modalities[self.target]
        log_qy = target.log_likelihood(logits, y_data).float()  # log q(y|x), summed over pixels
        code, known = self.target_code(y_data)
        tau = self.tau
        if self.training:
            self.step += 1
        given = labelled.view(-1, *[1] * len(self.y_shape)) & known
        y = torch.where(given, code, relaxed_one_hot(logits, tau, cax, cfg.hard))
        zc_mu, zc_logvar = self.encode_zc(h, y)
        z = torch.cat([reparameterize(zc_mu, zc_logvar), y.flatten(1)], dim=-1)
        lls = model.log_likelihoods(z.unsqueeze(0), batch)
        rec_x, per = model.present_reconstruction([lls[i][0] if i in self.inputs else None for i in range(len(lls))], present)
        terms: dict[str, Tensor] = {f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()}
        # the target's decoder learns to read y from its reserved dims (so p(target | z) is usable at test time)
        read = torch.where(labelled, lls[self.t_index][0].float(), 0.0)
        terms[f"rec/{self.target}"] = (read.sum() / n).detach()
        kl = kl_standard_normal(zc_mu, zc_logvar)
        elbo = rec_x - beta * kl + uniform_log_prior(self.y_dim // self.num_classes, self.num_classes)
        sup = labelled & has_x
        if cfg.objective == "supervised":
            bound = torch.where(sup, cfg.alpha * log_qy, 0.0)
        else:
            bound = torch.where(has_x, torch.where(labelled, elbo + cfg.alpha * log_qy, elbo + entropy(logits, cax)), 0.0)
        bound = bound + target.weight * read
        loss = -bound.sum() / n
        hit = (logits.argmax(cax) == y_data.long()) & known.squeeze(cax)
        n_known = known.squeeze(cax).float()
        correct = hit.float().flatten(1).sum(-1) / n_known.flatten(1).sum(-1).clamp_min(1) if hit.dim() > 1 else hit.float()
        # per-sample means like every logged term (so epoch averages are exact): accuracy = correct / labelled
        terms.update(loss=loss.detach(), kl=(torch.where(has_x, kl, 0.0).sum() / n).detach(),
                     log_qy=(torch.where(sup, log_qy, 0.0).sum() / n).detach(),
                     correct=(torch.where(sup, correct, 0.0).sum() / n).detach(),
                     labelled=(sup.sum() / n).detach(), tau=tau.detach())
        return LossOutput(loss, terms)

    # -- inference ------------------------------------------------------------------------------
    def encode(self, model: Engine, batch: Batch) -> Experts:
        feats = self.input_features(model, batch)
        code, known = self.target_code(batch.data[self.target])
        singles = torch.eye(len(self.names), dtype=torch.bool, device=batch.present.device)
        mu, logvar = self._posterior(feats, code, known, batch.present, singles)
        return Experts(mu, logvar, batch.present, {"features": feats, "target_code": code, "target_known": known})

    no_prior_reason = ("carries y as a relaxed one-hot whose prior is categorical and whose posterior is a near point "
                       "mass: a Gaussian p(z) over the whole latent would score y under a density the model never used")

    def prior(self):
        """None: z = [z_c, y] has no Gaussian prior, so the generic test ELBO and importance-sampled likelihoods,
        which score every latent dimension under one, are not applicable (M2 is judged by q(y|x) and its loss)."""
        return None

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """q(z | subset): y is the given one-hot if the target is in the subset, else q(y|x)'s probabilities
        (uniform with no input); z_c ~ q(z_c | x, y) if an input is in the subset, else the prior N(0, I)."""
        extra = experts.extra or {}
        if not {"features", "target_code", "target_known"} <= set(extra):
            raise TypeError("m2 posteriors need the features from M2.encode (use model.encode)")
        return DiagGaussian(*self._posterior(extra["features"], extra["target_code"], extra["target_known"], experts.present, subsets))

    def _posterior(self, feats, code, known, present, subsets) -> tuple[Tensor, Tensor]:
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & present.unsqueeze(0)  # (S, B, N)
        xm = mask[..., self.inputs]
        has_x = xm.any(-1)
        h = self._inputs(feats, xm)  # (S, B, F_in)
        spatial = [1] * len(self.y_shape)
        probs = torch.softmax(self.classify(h), dim=2 + self.class_pos)
        probs = torch.where(has_x.view(*has_x.shape, *spatial), probs, 1.0 / self.num_classes)
        given = mask[..., self.t_index].view(*has_x.shape, *spatial) & known  # unknown pixels: q(y|x)
        y = torch.where(given, code, probs)
        zc_mu, zc_logvar = self.encode_zc(h, y)
        keep = has_x.unsqueeze(-1)
        zc_mu, zc_logvar = torch.where(keep, zc_mu, 0.0), torch.where(keep, zc_logvar, 0.0)
        y_flat = y.flatten(2)
        return torch.cat([zc_mu, y_flat], -1), torch.cat([zc_logvar, torch.full_like(y_flat, Y_LOGVAR)], -1)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("m2", M2)
