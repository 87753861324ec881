"""Product and quotient of experts: MVAE-Q (Wu & Goodman, 2018, Eq. 3), with its variance constraint enforced.

q(z | X) ∝ ∏_{i∈X} q(z | x_i) / p(z)^{|X|−1}. For Gaussians the quotient has precision
Σ_i T_i − (|X| − 1)·T_prior, a distribution only where that is positive (V2 > V1 elementwise in the
paper's words). Here every unimodal posterior is constrained to variance below the prior's
(V_i = sigmoid(logvar_i) < 1, so T_i > 1), which makes the quotient's precision exceed 1 for every
subset: it is always defined, with no clamping and no lost gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, hookimpl, subset_gaussian_elbo
from modkit.distributions import DiagGaussian, Experts, product_of_experts


class PoEQuotientConfig(FusionConfig):
    pass


def constrained_experts(experts: Experts) -> Experts:
    """Read the encoder's logvar as the unimodal posterior's variance through V = sigmoid(logvar) ∈ (0, 1)."""
    return Experts(experts.mu, torch.nn.functional.logsigmoid(experts.logvar), experts.present)


def quotient_of_experts(experts: Experts, subsets: Tensor) -> tuple[Tensor, Tensor]:
    """∏_{i∈S∩present} q_i / p^{n−1} with p = N(0, I), n = |S ∩ present|: (mu, logvar) of shape (S, B, D).

    ``experts`` must already satisfy V_i < 1 (see :func:`constrained_experts`). An empty subset
    (n = 0) gives the prior itself, as its product times p.
    """
    product_mu, product_logvar = product_of_experts(experts, subsets, prior=False)
    product_precision = torch.exp(-product_logvar)  # Σ T_i (or a tiny number where the subset is empty)
    rows = subsets.to(torch.float32)
    present = experts.present.to(torch.float32)  # (B, N)
    count = torch.einsum("sn,bn->sb", rows, present) if rows.dim() == 2 else torch.einsum("sbn,bn->sb", rows, present)
    is_empty = (count == 0).unsqueeze(-1)
    precision = product_precision - (count.unsqueeze(-1) - 1.0)  # divide by the prior n − 1 times (T_prior = 1)
    precision = torch.where(is_empty, 1.0, precision)
    mu = torch.where(is_empty, 0.0, product_mu * product_precision / precision)
    return mu, -torch.log(precision)


class ProductQuotientOfExperts(Fusion):
    """MVAE-Q: q(z|X) ∝ ∏ q(z|x_i) / p(z)^{|X|−1}, unimodal variances constrained below the prior's."""

    Config = PoEQuotientConfig

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        return DiagGaussian(*quotient_of_experts(constrained_experts(experts), subsets))

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        experts = model.encode(batch)
        mu, logvar = quotient_of_experts(constrained_experts(experts), plan.mask)  # (S, B, D)
        return subset_gaussian_elbo(model, batch, plan, mu, logvar, beta)

@hookimpl
def modkit_register(registry):
    registry.add_fusion("poe_quotient", ProductQuotientOfExperts)
