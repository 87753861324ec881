"""The distribution math of multimodal VAEs, public: what a fusion or a modality computes its objective with.

Gaussian experts and their product in precision space, log-densities, KL divergences, the
reparameterisation, Laplace experts, (weighted or uniform) mixtures of experts, a learnable mixture prior
with its cluster read-out, MoPoE's weighted subset KL,
and the likelihoods p(x | decoder output) a modality scores its data with::

    from modkit.distributions import DiagGaussian, Experts, product_of_experts, kl_standard_normal

The contracts a plugin implements (``Modality``, ``Fusion``, ...) come from :mod:`modkit` itself; the
math has a module of its own so that ``modkit``'s own namespace stays the contracts. The implementation
lives in ``modkit.core`` (the engine builds on it) and may move; this module's ``__all__`` stays.
"""
from __future__ import annotations

from modkit.core.distributions import (LOG_2, Component, Concatenated, DiagLaplace, Family, LatentDistribution, Pushforward, Stacked, UniformMixture,
                                       WeightedMixture,
                                       family_log_prob, from_expert, laplace_log_prob, uniform_log_weights)
from modkit.core.gaussian import (LOG_2PI, DiagGaussian, Experts, cross_log_prob, expert_precisions, gaussian_log_prob, kl_gaussians,
                                  kl_standard_normal, product_of_experts, reparameterize)
from modkit.core.mixture_prior import MixturePrior, scale_from_raw
from modkit.core.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, Likelihood, make_likelihood
from modkit.core.subset_kl import weighted_subset_kl

__all__ = [
    # Gaussian experts: (N, B, D) per modality, their product over subsets, densities, KL, sampling
    "DiagGaussian", "Experts", "product_of_experts", "expert_precisions", "gaussian_log_prob", "kl_standard_normal",
    "kl_gaussians", "reparameterize", "cross_log_prob", "weighted_subset_kl", "LOG_2PI",
    # other latent families and mixtures of experts (MoE, MoPoE posteriors)
    "DiagLaplace", "laplace_log_prob", "Family", "Component", "from_expert", "family_log_prob", "LatentDistribution",
    "WeightedMixture", "UniformMixture", "uniform_log_weights", "LOG_2",
    # independent blocks side by side (a shared latent beside modality-private ones)
    "Concatenated",
    # a learnable mixture prior p(z) = Σ_c π_c p(z | c): density, KL estimate, sampling, cluster read-out
    "MixturePrior", "scale_from_raw",
    # a base distribution through an invertible map (normalizing-flow posteriors), and distributions of different kinds
    # stacked on a leading batch axis (mixture components, or one posterior per subset row)
    "Pushforward", "Stacked",
    # likelihoods p(x | decoder output) a modality scores its data with
    "Likelihood", "Bernoulli", "Categorical", "Gaussian", "Laplace", "make_likelihood",
]
