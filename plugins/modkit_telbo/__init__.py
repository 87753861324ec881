"""TELBO (Vedantam, Fischer, Huang & Murphy, 2018): a joint VAE trained first, then unimodal encoders fitted to it.

The "triple ELBO" trains q(z | X), the decoders and q(z | x_m) for each modality. MultiVae 1.0.3 (whose TELBO this
follows) trains them in two stages, which modkit runs as multistage training (docs/recipes.md, "Training in stages"):

* ``joint`` (the first ``warmup`` epochs): the joint encoder and the decoders on the joint ELBO
  E_q(z|X)[Σ_m λ_m log p(x_m|z)] − β KL(q(z|X) ‖ p(z));
* ``unimodal`` (the rest): the joint encoder and the decoders frozen, each unimodal encoder on its own ELBO
  E_q(z|x_m)[γ_m log p(x_m|z)] − β KL(q(z|x_m) ‖ p(z)), decoded by the frozen decoder.

The joint encoder is a :class:`modkit.JointEncoder` over features from its own copy of each modality's encoder
(as MultiVae's default joint encoder copies the unimodal encoders): the unimodal encoders keep training in the
second stage, and a joint encoder that read their features would drift from the decoders it was fitted with.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import Batch, Engine, Fusion, FusionConfig, JointEncoder, LossOutput, RecipeError, SubsetPlan, hookimpl
from modkit.distributions import DiagGaussian, Experts, kl_standard_normal

JOINT, UNIMODAL = "joint", "unimodal"


class TELBOConfig(FusionConfig):
    warmup: int | None = Field(None, ge=1, description="epochs of the joint stage before the unimodal one (MultiVae's warmup); "
                                                       "default: half of train.epochs, as MultiVae recommends")
    lambda_factors: dict[str, float] | None = Field(None, description="weights of each modality's log-likelihood in the joint "
                                                                      "ELBO (MultiVae's lambda_factors); default: the modality's weight")
    gamma_factors: dict[str, float] | None = Field(None, description="weights of each modality's log-likelihood in its unimodal "
                                                                     "ELBO (MultiVae's gamma_factors); default: the modality's weight")
    hidden: list[int] = Field([512, 512], min_length=1, description="hidden sizes of the joint encoder over the concatenated "
                                                                    "features (MultiVae's default joint MLP: 2 × 512)")


class JointPosterior(nn.Module):
    """q(z | X): a joint encoder over features from the fusion's own copy of each modality's encoder."""

    def __init__(self, modalities, latent_dim: int, hidden: list[int]):
        super().__init__()
        self.trunks = nn.ModuleDict()
        for name, modality in modalities.items():
            if not isinstance(getattr(modality, "feature_dim", None), int):
                raise RecipeError(f"modalities.{name}", f"{type(modality).__name__} has no feature_dim; telbo's joint encoder reads features")
            trunk = copy.deepcopy(modality)
            for part in ("head", "decoder", "task_head"):  # never on the way to features: no dead weights in the checkpoint
                if isinstance(trunk._modules.get(part), nn.Module):
                    setattr(trunk, part, None)
            self.trunks[name] = trunk
        self.net = JointEncoder([m.feature_dim for m in modalities.values()], latent_dim, hidden)

    def features(self, batch: Batch) -> list[Tensor]:
        return [trunk.features(batch.data[name]) for name, trunk in self.trunks.items()]

    def forward(self, features: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(features, mask)


def _factors(option: str, given: dict[str, float] | None, modalities) -> Tensor:
    given = given or {}
    unknown = [name for name in given if name not in modalities]
    if unknown:
        raise RecipeError(f"model.fusion.{option}", f"'{unknown[0]}' is not a modality of this recipe ({', '.join(modalities)})")
    bad = [name for name, value in given.items() if not value >= 0 or value == float("inf")]
    if bad:
        raise RecipeError(f"model.fusion.{option}.{bad[0]}", f"must be a finite number ≥ 0 (got {given[bad[0]]})")
    return torch.tensor([float(given.get(name, modality.weight)) for name, modality in modalities.items()])


class TELBO(Fusion):
    """The triple ELBO in two stages: the joint VAE, then each unimodal encoder against the frozen decoders."""

    Config = TELBOConfig
    uses_sampler = False
    objectives = (JOINT, UNIMODAL)

    def __init__(self, modalities, latent_dim: int, config: TELBOConfig):
        super().__init__(modalities, latent_dim, config)
        self.joint = JointPosterior(modalities, latent_dim, config.hidden)
        self.register_buffer("lambdas", _factors("lambda_factors", config.lambda_factors, modalities), persistent=False)
        self.register_buffer("gammas", _factors("gamma_factors", config.gamma_factors, modalities), persistent=False)

    @classmethod
    def stages(cls, config: TELBOConfig, epochs: int) -> list[dict[str, Any]]:
        """``joint`` for ``warmup`` epochs (default half of them), then ``unimodal`` with the joint encoder and the decoders frozen."""
        if epochs < 2:
            raise RecipeError("train.epochs", f"telbo trains in two stages (joint, then unimodal) and needs at least 2 epochs, got {epochs}")
        warmup = config.warmup if config.warmup is not None else epochs // 2
        if warmup >= epochs:
            raise RecipeError("model.fusion.warmup", f"{warmup} joint epochs leave none of train.epochs ({epochs}) for the unimodal stage")
        return [{"name": JOINT, "epochs": warmup},
                {"name": UNIMODAL, "epochs": epochs - warmup, "freeze": ["fusion.joint", "modalities.*.decoder"]}]

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"hidden": [8]}

    def noise(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal noise (a method, so a cross-check can hand both implementations the same draws)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    # -- the objective --------------------------------------------------------------------------
    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        """The stage's ELBO(s) (``model.stage``; outside staged training, the joint one). A sample with missing
        modalities (MultiVae trains TELBO on complete data only) is encoded jointly from the ones it has, and only those
        are reconstructed; in the unimodal stage only its present modalities' ELBOs count."""
        if model.stage == UNIMODAL:
            return self.unimodal_loss(model, batch, beta)
        return self.joint_loss(model, batch, beta)

    def joint_loss(self, model: Engine, batch: Batch, beta: float) -> LossOutput:
        present, n = batch.present, len(batch)
        mu, logvar = self.joint(self.joint.features(batch), present)  # (B, D)
        z = mu + self.noise(*mu.shape, like=mu) * torch.exp(0.5 * logvar)
        lls = model.log_likelihoods(z.unsqueeze(0), batch)
        rec, per = self._reconstruction([ll[0] for ll in lls], present, self.lambdas, bool(batch.all_present))
        kl = kl_standard_normal(mu, logvar)  # (B,)
        some = present.any(-1)
        loss = -torch.where(some, rec - beta * kl, 0.0).sum() / n
        terms = {f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()}
        terms.update(loss=loss.detach(), kl=(torch.where(some, kl, 0.0).sum() / n).detach())
        return LossOutput(loss, terms)

    def unimodal_loss(self, model: Engine, batch: Batch, beta: float) -> LossOutput:
        experts = model.encode_experts(batch)  # (N, B, D)
        present, n, count = batch.present, len(batch), len(self.names)
        z = experts.mu + self.noise(*experts.mu.shape, like=experts.mu) * torch.exp(0.5 * experts.logvar)
        rows = [torch.tensor([i], device=z.device) for i in range(count)]  # each decoder on its own modality's draw
        lls = model.log_likelihoods(z, batch, rows, [1] * count)
        kl = kl_standard_normal(experts.mu, experts.logvar)  # (N, B)
        elbo = torch.stack([self.gammas[i] * ll[0].float() for i, ll in enumerate(lls)]) - beta * kl  # (N, B)
        mask = present.T
        loss = -(elbo if batch.all_present else torch.where(mask, elbo, 0.0)).sum() / n
        terms = {f"rec/{name}": (torch.where(mask[i], lls[i][0].float(), 0.0).sum() / n).detach()
                 for i, name in enumerate(self.names)}
        terms.update(loss=loss.detach(), kl=(torch.where(mask, kl, 0.0).sum() / n).detach())
        return LossOutput(loss, terms)

    def _reconstruction(self, lls: list[Tensor], present: Tensor, factors: Tensor, all_present: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ_m factor_m log p(x_m | z) over each sample's present modalities, and the masked unweighted terms."""
        total: Tensor | float = 0.0
        per: dict[str, Tensor] = {}
        for i, ll in enumerate(lls):
            ll = ll.float()
            ll = ll if all_present else torch.where(present[:, i], ll, 0.0)
            per[self.names[i]] = ll
            total = total + factors[i] * ll
        return total, per

    # -- inference ------------------------------------------------------------------------------
    def encode(self, model: Engine, batch: Batch) -> Experts:
        """The unimodal experts, carrying the joint encoder's features for ``posterior``."""
        return model.encode_experts(batch)._replace(extra={"features": self.joint.features(batch)})

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """As MultiVae's TELBO infers: the joint encoder when every modality is given (and present), the modality's
        own encoder when one is; where MultiVae refuses (several but not all), the product of the given unimodal
        experts without a prior expert (the paper's product of experts for missing attributes); N(0, I) for none."""
        if not experts.extra or "features" not in experts.extra:
            raise TypeError("telbo posteriors need the features from TELBO.encode (use model.encode)")
        return self.joint.net.subset_posterior(experts, subsets, experts.extra["features"])


@hookimpl
def modkit_register(registry):
    registry.add_fusion("telbo", TELBO)
