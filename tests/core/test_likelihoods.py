"""Likelihoods against torch.distributions."""
import pytest
import torch

from modkit.core.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, make_likelihood
from modkit.errors import RecipeError


def test_bernoulli_matches_torch():
    logits, x = torch.randn(3, 5, 2, 4), torch.randint(0, 2, (5, 2, 4)).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x.expand_as(logits)).sum((-1, -2))
    torch.testing.assert_close(Bernoulli(event_dims=2).log_prob(logits, x), expected)


@pytest.mark.parametrize("cls,dist", [(Gaussian, torch.distributions.Normal), (Laplace, torch.distributions.Laplace)])
def test_location_scale_match_torch(cls, dist):
    out, x = torch.randn(2, 4, 6), torch.randn(4, 6)
    expected = dist(out, 0.75).log_prob(x.expand_as(out)).sum(-1)
    torch.testing.assert_close(cls(event_dims=1, scale=0.75).log_prob(out, x), expected)


def test_learned_scale_is_a_parameter():
    lik = make_likelihood("gaussian", 1, "learned")
    assert any(p is lik.log_scale for p in lik.parameters())


def test_categorical_class_axis_last_and_channel_first():
    logits, x = torch.randn(3, 5, 7), torch.randint(0, 7, (5,))
    expected = torch.distributions.Categorical(logits=logits).log_prob(x.expand(3, 5))
    torch.testing.assert_close(Categorical(event_dims=0).log_prob(logits, x), expected)
    # per-pixel masks: (lead, B, C, H, W) against (B, H, W)
    logits, x = torch.randn(2, 4, 3, 5, 5), torch.randint(0, 3, (4, 5, 5))
    expected = torch.distributions.Categorical(logits=logits.movedim(2, -1)).log_prob(x.expand(2, 4, 5, 5)).sum((-1, -2))
    torch.testing.assert_close(Categorical(event_dims=2, class_dim=-3).log_prob(logits, x), expected)


def test_bad_likelihood_names_the_key():
    with pytest.raises(RecipeError, match="modalities.image.likelihood"):
        make_likelihood("poisson", 3, key="modalities.image.likelihood")
    with pytest.raises(RecipeError, match="modalities.image.scale"):
        make_likelihood("laplace", 3, scale=-1.0, key="modalities.image.likelihood")
