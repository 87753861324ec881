"""A worked fusion plugin: a gated mixture of experts.

q(z | X_s) = Σ_{m ∈ s ∩ present} g_m(X) q(z | x_m), with gate weights g = softmax over the present
modalities of a score each modality computes from its own features. Training maximises the
stratified ELBO Σ_m g_m E_{q_m}[log p(X | z) + log p(z) − log q(z | X)]: one draw from every expert, every
decoder run once on all of them. docs/plugin-api.md walks through it; tests/docs/test_plugin_api_examples.py
checks it with modkit.testing and trains and evaluates it.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, hookimpl
from modkit.distributions import DiagGaussian, Experts, WeightedMixture


class GatedConfig(FusionConfig):
    temperature: float = Field(1.0, gt=0, description="divides the gate scores: large → closer to a uniform mixture")


class GatedMixture(Fusion):
    """A mixture of the present unimodal experts, weighted by a learned gate on their features."""

    Config = GatedConfig
    uses_sampler = False  # the objective always uses every present modality, whatever subsets the sampler draws

    def __init__(self, modalities, latent_dim: int, config: GatedConfig):
        super().__init__(modalities, latent_dim, config)
        # one score per modality from its own features: read feature_dim now, keep no reference to the modality
        self.gates = nn.ModuleList(nn.Linear(m.feature_dim, 1) for m in modalities.values())

    def encode(self, model: Engine, batch: Batch) -> Experts:
        """Each encoder once, giving features and experts; the gate scores travel in ``Experts.extra``."""
        features, experts = model.encode_with_features(batch)
        scores = torch.stack([gate(features[name].float()).squeeze(-1) for gate, name in zip(self.gates, self.names)])
        return experts._replace(extra={"scores": scores / self.config.temperature})  # (N, B)

    def posterior(self, experts: Experts, subsets: Tensor) -> WeightedMixture:
        """For each subset row: a mixture over its present experts, with the prior as the fallback component
        when none is present. Batch shape (S, B); components along a new first axis (N + 1)."""
        n, b, d = experts.mu.shape
        s = subsets.shape[0]
        valid = subsets.bool().view(s, 1, n) & experts.present.view(1, b, n)  # (S, B, N)
        none = ~valid.any(-1, keepdim=True)                                   # (S, B, 1): nothing to mix
        scores = experts.extra["scores"].T.expand(s, b, n)                    # (S, B, N)
        log_weights = torch.cat([torch.where(valid, scores, float("-inf")), torch.where(none, 0.0, float("-inf"))], -1)
        zeros = experts.mu.new_zeros(1, b, d)
        mu = torch.cat([experts.mu, zeros]).unsqueeze(1).expand(n + 1, s, b, d)
        logvar = torch.cat([experts.logvar, zeros]).unsqueeze(1).expand(n + 1, s, b, d)
        return WeightedMixture(DiagGaussian(mu, logvar), log_weights.permute(2, 0, 1))

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        experts = model.encode(batch)
        everything = torch.ones(1, len(self.names), dtype=torch.bool, device=batch.present.device)
        q = self.posterior(experts, everything)                    # batch shape (1, B)
        z = q.component_samples(1)[0, :, 0]                        # (N + 1, B, D): one draw per component
        lls = model.log_likelihoods(z, batch)                      # per modality (N + 1, B), each decoder once
        rec, per = model.present_reconstruction(lls, batch.present)  # Σ_m λ_m log p(x_m | z): absent ones 0
        log_q = q.log_prob(z.unsqueeze(1))[:, 0]                   # (N + 1, B): the mixture's density at each draw
        kl = log_q - self.prior().log_prob(z)                      # a one-sample estimate of log q − log p
        weights = q.weights[:, 0]                                  # (N + 1, B); 0 for absent experts
        n = len(batch)
        loss = -(weights * (rec - beta * kl)).sum() / n
        terms = {"loss": loss.detach(), "kl": ((weights * kl).sum() / n).detach()}
        terms.update({f"rec/{name}": ((weights * ll).sum() / n).detach() for name, ll in per.items()})
        return LossOutput(loss, terms)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("gated_moe", GatedMixture)
