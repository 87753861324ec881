"""CRMVAE (Suzuki & Matsuo, 2023): MVTCAE's product-of-experts objective with the unimodal reconstructions added.

The joint posterior q(z|X) is the product of the present unimodal experts without a prior expert (MVTCAE's,
whose ``posterior`` this fusion inherits). Each modality is reconstructed twice, from a draw of the joint
posterior and from a draw of its own unimodal posterior, and the joint posterior is tied to the prior and to
every present unimodal posterior, with MultiVae's weights over N modalities:

    L = 1/(2(N+1)) Σ_m λ_m [E_q(z|X) log p(x_m|z) + E_q(z|x_m) log p(x_m|z)]
        − β/(N+1) [KL(q(z|X) ‖ p(z)) + Σ_m KL(q(z|X) ‖ q(z|x_m))]

as MultiVae 1.0.3 computes it (its ``CRMVAE.forward``). β is the run's schedule (``model.beta``; MultiVae's
default 2.5). A missing modality is neither reconstructed nor tied; N stays the number of modalities.
"""
from __future__ import annotations

import torch
from torch import Tensor

from modkit import Batch, Engine, FusionConfig, LossOutput, SubsetPlan, hookimpl
from modkit.distributions import kl_gaussians, kl_standard_normal
from modkit_mvtcae import MVTCAE


class CRMVAEConfig(FusionConfig):
    """No options of its own: MultiVae's CRMVAE has only β, which is the run's ``model.beta`` here."""


class CRMVAE(MVTCAE):
    """CRMVAE: PoE posterior (no prior expert), joint and unimodal reconstructions, KLs to the prior and to each expert."""

    Config = CRMVAEConfig
    uses_sampler = False

    def __init__(self, modalities, latent_dim: int, config: CRMVAEConfig):
        super().__init__(modalities, latent_dim, config)
        n = len(self.names)
        # modality i is decoded on two latent rows: the joint draw (0) and its own unimodal draw (1 + i); kept on the
        # module's device so a step copies nothing from the host
        self.register_buffer("_rows", torch.stack([torch.zeros(n, dtype=torch.long), torch.arange(1, n + 1)], 1), persistent=False)

    def noise(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal draws (a method, so a cross-check can hand both implementations the same ones)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        experts = model.encode(batch)
        present, b, n = batch.present, len(batch), len(self.names)
        everything = torch.ones(1, n, dtype=torch.bool, device=present.device)
        joint = self.posterior(experts, everything)
        mu = torch.cat([joint.mu, experts.mu])  # (1 + N, B, D): the joint posterior, then each unimodal one
        logvar = torch.cat([joint.logvar, experts.logvar])
        z = mu + torch.exp(0.5 * logvar) * self.noise(*mu.shape, like=mu)
        lls = model.log_likelihoods(z, batch, list(self._rows), [2] * n)  # each decoder once, on its two rows
        rec, per = model.present_reconstruction(lls, present, bool(batch.all_present))  # (2, B)
        kl = kl_standard_normal(joint.mu[0], joint.logvar[0])  # (B,)
        tie = kl_gaussians(joint.mu, joint.logvar, experts.mu, experts.logvar)  # (N, B)
        tie = (tie if batch.all_present else torch.where(present.T, tie, 0.0)).sum(0)
        some = present.any(-1)  # a sample without any modality has no joint posterior: it counts for nothing
        bound = rec.sum(0) / (2 * (n + 1)) - beta * (kl + tie) / (n + 1)
        loss = -torch.where(some, bound, 0.0).sum() / b
        terms = {f"rec/{name}": (ll[0].sum() / b).detach() for name, ll in per.items()}
        terms.update({f"rec_unimodal/{name}": (ll[1].sum() / b).detach() for name, ll in per.items()})
        terms.update(loss=loss.detach(), kl=(torch.where(some, kl, 0.0).sum() / b).detach(),
                     kl_conditional=(torch.where(some, tie, 0.0).sum() / b).detach())
        return LossOutput(loss, terms)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("crmvae", CRMVAE)
