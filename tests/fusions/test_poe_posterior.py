"""The PoE fusion's posterior is the product it was trained with."""
from __future__ import annotations

import pytest
import torch
from fusion_toy import toy_batch, toy_model

from modkit.core.gaussian import product_of_experts
from modkit.core.subsets import all_subsets
from modkit_poe import PoEConfig, ProductOfExperts


@pytest.mark.parametrize("prior_expert", [True, False])
def test_posterior_follows_prior_expert(prior_expert):
    model = toy_model(ProductOfExperts, PoEConfig(type="poe", prior_expert=prior_expert), n_modalities=3, latent_dim=2)
    experts = model.encode(toy_batch(torch.ones(4, 3, dtype=torch.bool)))
    got = model.fusion.posterior(experts, all_subsets(3))
    mu, logvar = product_of_experts(experts, all_subsets(3), prior=prior_expert)
    torch.testing.assert_close(got.mu, mu)
    torch.testing.assert_close(got.logvar, logvar)
    other_mu, _ = product_of_experts(experts, all_subsets(3), prior=not prior_expert)
    assert not torch.allclose(got.mu, other_mu)
