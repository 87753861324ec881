"""CVAE (Sohn, Lee & Yan, 2015): a conditional model p(y | z, x) of one main modality y given conditioning ones x.

An encoder q(z | x, y) reads the main and the conditioning modalities together (a :class:`modkit.JointEncoder`
over their features), the main modality's decoder reads [z, c(x)] — c a deterministic code of the conditioning
modalities' features — and the prior is N(0, I) or, with ``prior_network``, a learned p(z | x):

    L = E_q(z|x,y) log p(y | z, x) − β KL(q(z | x, y) ‖ p(z | x))

The latent the model carries is [z, c]: ``model.latent_dim`` is z's size, ``condition_dim`` c's, and every modality is
built at their sum (only the main one decodes it). Samples missing the main or a conditioning modality are left out.

The conditioning modalities' decoders are built, as every modality's is, but never trained: the engine, checkpoints,
export and every metric count on each modality having one, so numbers that decode a conditioning modality (its
``test/rec``, coherence toward it) describe an untrained network (docs/fusions/cvae.md says why they are kept).
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from modkit import Batch, Engine, Fusion, FusionConfig, JointEncoder, LossOutput, RecipeError, SubsetPlan, hookimpl, mlp
from modkit.distributions import DiagGaussian, Experts, kl_gaussians, reparameterize

#: log-variance of the code c in a posterior: c is a function of the conditioning data, not sampled
CODE_LOGVAR = -10.0


class CVAEConfig(FusionConfig):
    main_modality: str = Field(..., description="y, the modality the model generates (MultiVae's main_modality)")
    conditioning_modalities: list[str] = Field(..., min_length=1, description="x, the modalities it is conditioned on")
    hidden: list[int] = Field([512, 512], min_length=1, description="hidden sizes of q(z | x, y), of the code c(x) and of "
                                                                    "p(z | x) (MultiVae's default joint encoder: 2 × 512)")
    condition_dim: int = Field(16, ge=1, description="size of the code c(x) the main decoder reads beside z")
    prior_network: bool = Field(False, description="a learned prior p(z | x) (MultiVae's prior_network); False: N(0, I)")


class CVAE(Fusion):
    """CVAE: q(z | x, y), p(y | z, c(x)), prior N(0, I) or p(z | x)."""

    Config = CVAEConfig
    uses_sampler = False
    no_prior_reason = ("is conditional: p(z | x) and the code c(x) depend on the conditioning modalities, so there is no "
                       "unconditional prior to score or sample")

    @classmethod
    def latent_width(cls, modalities, latent_dim: int, config: CVAEConfig) -> int:
        return latent_dim + config.condition_dim

    @classmethod
    def example(cls) -> dict:
        return {"main_modality": "a", "conditioning_modalities": ["b", "c"], "hidden": [8], "condition_dim": 2, "prior_network": True}

    def __init__(self, modalities, latent_dim: int, config: CVAEConfig):
        super().__init__(modalities, latent_dim, config)
        for key, name in [("main_modality", config.main_modality), *(("conditioning_modalities", n) for n in config.conditioning_modalities)]:
            if name not in self.names:
                raise RecipeError(f"model.fusion.{key}", f"'{name}' is not a modality of this recipe ({', '.join(self.names)})")
        if config.main_modality in config.conditioning_modalities or len(set(config.conditioning_modalities)) != len(config.conditioning_modalities):
            raise RecipeError("model.fusion.conditioning_modalities", "name each conditioning modality once, and not the main one")
        self.z_dim = latent_dim - config.condition_dim
        if self.z_dim < 1:
            raise RecipeError("model.latent_dim", f"must be at least 1 beside condition_dim {config.condition_dim}")
        self.main = self.names.index(config.main_modality)
        self.conditions = [self.names.index(n) for n in config.conditioning_modalities]
        dims = {n: getattr(m, "feature_dim", None) for n, m in modalities.items()}
        for name in [config.main_modality, *config.conditioning_modalities]:
            if not isinstance(dims[name], int):
                raise RecipeError(f"modalities.{name}", f"{type(modalities[name]).__name__} has no feature_dim; cvae's encoders read features")
        cond_dims = [dims[self.names[i]] for i in self.conditions]
        self.encoder = JointEncoder([dims[config.main_modality], *cond_dims], self.z_dim, config.hidden)
        self.code = mlp([sum(cond_dims) + len(cond_dims), *config.hidden, config.condition_dim])
        self.prior_net = JointEncoder(cond_dims, self.z_dim, config.hidden) if config.prior_network else None

    # -- pieces ---------------------------------------------------------------------------------
    def parts(self, features: list[Tensor], mask: Tensor):
        """q(z | x, y), p(z | x) and c(x) from every modality's features and a (..., B, N) mask of what is given."""
        main, conds = features[self.main], [features[i] for i in self.conditions]
        q = self.encoder([main, *conds], mask[..., [self.main, *self.conditions]])
        cond_mask = mask[..., self.conditions]
        parts = [torch.where(cond_mask[..., j:j + 1], f.float(), 0.0) for j, f in enumerate(conds)]
        lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts), cond_mask.shape[:-1])
        parts = [p.expand(*lead, p.shape[-1]) for p in parts]
        c = self.code(torch.cat([*parts, cond_mask.expand(*lead, cond_mask.shape[-1]).to(parts[0].dtype)], -1))
        if self.prior_net is not None:
            p = self.prior_net(conds, cond_mask)
        else:
            zeros = q[0].new_zeros(q[0].shape)
            p = (zeros, zeros)
        return q, p, c

    # -- the objective --------------------------------------------------------------------------
    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        features, _ = model.encode_with_features(batch)
        feats = [features[n] for n in model.names]
        present, n = batch.present, len(batch)
        (mu, logvar), (p_mu, p_logvar), c = self.parts(feats, present)
        z = reparameterize(mu, logvar)
        counts = [1 if i == self.main else 0 for i in range(len(self.names))]  # only the main modality is modelled
        ll = model.log_likelihoods(torch.cat([z, c], -1).unsqueeze(0), batch, counts=counts)[self.main][0].float()
        kl = kl_gaussians(mu, logvar, p_mu, p_logvar)
        valid = present[:, self.main] & present[:, self.conditions].all(-1)
        weight = model.modalities[self.names[self.main]].weight
        loss = -torch.where(valid, weight * ll - beta * kl, 0.0).sum() / n
        terms = {"loss": loss.detach(), "kl": (torch.where(valid, kl, 0.0).sum() / n).detach(),
                 f"rec/{self.names[self.main]}": (torch.where(valid, ll, 0.0).sum() / n).detach(),
                 "modelled": (valid.sum() / n).detach()}
        return LossOutput(loss, terms)

    # -- inference ------------------------------------------------------------------------------
    def encode(self, model: Engine, batch: Batch) -> Experts:
        """The unimodal experts (unused by CVAE's posterior) carrying every modality's features."""
        features, experts = model.encode_with_features(batch)
        return experts._replace(extra={"features": [features[n] for n in model.names]})

    def prior(self):
        """None: p(z | x) and c(x) need the conditioning modalities (see ``no_prior_reason``)."""
        return None

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """[z, c]: z ~ q(z | x, y) when the main modality is given, else the prior p(z | x) (N(0, I) without a prior
        network); c = c(the given conditioning modalities), a point mass. Conditioning modalities that are not given
        read as absent, which training never showed the model: the meaningful directions give them all."""
        if not experts.extra or "features" not in experts.extra:
            raise TypeError("cvae posteriors need the features from CVAE.encode (use model.encode)")
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)  # (S, B, N)
        (mu, logvar), (p_mu, p_logvar), c = self.parts(experts.extra["features"], mask)
        main = mask[..., self.main:self.main + 1]
        mu, logvar = torch.where(main, mu, p_mu.expand_as(mu)), torch.where(main, logvar, p_logvar.expand_as(logvar))
        return DiagGaussian(torch.cat([mu, c], -1), torch.cat([logvar, torch.full_like(c, CODE_LOGVAR)], -1))


@hookimpl
def modkit_register(registry):
    registry.add_fusion("cvae", CVAE)
