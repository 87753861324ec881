"""The engine's private latents (PrivateLayout, latent views, Fusion.private_latents), the Concatenated distribution
and the JointEncoder, each against a direct computation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modkit import JointEncoder, MultimodalVAE, PrivateLayout, RecipeError
from modkit.config.recipe import load_recipe
from modkit.distributions import Concatenated, DiagGaussian, DiagLaplace, Experts
from modkit.plugins.loader import load_plugins
from modkit.testing import ClassConfig, ClassModality, VectorConfig, VectorModality, toy_batch
from modkit.training.builder import build

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_layout_views_split_and_assemble():
    layout = PrivateLayout(shared=3, private=2, n=3)
    assert layout.width == 9 and layout.modality_width == 5
    assert layout.view(0).tolist() == [0, 1, 2, 3, 4]
    assert layout.view(2).tolist() == [0, 1, 2, 7, 8]
    u, w = torch.randn(4, 6, 3), torch.randn(4, 3, 6, 2)  # (lead, B, D), (lead, N, B, P)
    z = layout.assemble(u, w)
    assert z.shape == (4, 6, 9)
    for i in range(3):  # what modality i's decoder reads is [u, w_i]
        assert torch.equal(z.index_select(-1, layout.view(i)), torch.cat([u, w[:, i]], -1))
    experts = Experts(torch.randn(3, 6, 5), torch.randn(3, 6, 5), torch.ones(6, 3, dtype=torch.bool))
    shared, mu, logvar = layout.split(experts)
    assert torch.equal(shared.mu, experts.mu[..., :3]) and torch.equal(mu, experts.mu[..., 3:]) and torch.equal(logvar, experts.logvar[..., 3:])


def test_a_latent_view_decodes_only_its_dimensions():
    modality = VectorModality("a", VectorConfig(type="vector"), 5)
    z = torch.randn(2, 7, 9)
    plain = modality.decode(z[..., [0, 1, 2, 5, 6]])
    modality.set_latent_view(torch.tensor([0, 1, 2, 5, 6]))
    assert torch.equal(modality.decode(z), plain)
    assert "latent_view" not in modality.state_dict()  # derived from the recipe, never saved with the weights
    with pytest.raises(ValueError, match="must pick its 5 latent dimensions"):
        modality.set_latent_view(torch.tensor([0, 1]))


def test_concatenated_is_the_product_of_its_blocks():
    a = DiagGaussian(torch.randn(4, 3), torch.randn(4, 3))
    b = DiagLaplace(torch.randn(4, 2), torch.rand(4, 2) + 0.5)
    both = Concatenated([a, b])
    z = both.rsample(5)
    assert z.shape == (5, 4, 5) and torch.equal(both.mean, torch.cat([a.mu, b.loc], -1))
    expected = torch.distributions.Normal(a.mu, a.std).log_prob(z[..., :3]).sum(-1) + \
        torch.distributions.Laplace(b.loc, b.scale).log_prob(z[..., 3:]).sum(-1)
    assert torch.allclose(both.log_prob(z), expected, atol=1e-5)


def test_the_builder_sizes_modalities_and_latent_from_private_latents():
    recipe, _ = load_recipe(RECIPES / "digits-dmvae.yaml", ["model.latent_dim=6", "model.fusion.modalities_specific_dim=3"])
    model = build(recipe, load_plugins()).model
    assert model.latent_dim == 6 + 2 * 3
    assert all(m.latent_dim == 9 for m in model.modalities.values())
    assert model.modalities["label"].latent_view.tolist() == [0, 1, 2, 3, 4, 5, 9, 10, 11]


def test_a_model_built_at_the_wrong_width_is_a_recipe_error():
    from modkit_dmvae import DMVAE

    modalities = {"a": VectorModality("a", VectorConfig(type="vector"), 4), "c": ClassModality("c", ClassConfig(type="class"), 4)}
    with pytest.raises(RecipeError, match="must be shared \\+ private"):
        DMVAE(modalities, 8, DMVAE.Config(type="dmvae", modalities_specific_dim=2))
    with pytest.raises(RecipeError, match="leaves no shared dimensions"):
        DMVAE(modalities, 4, DMVAE.Config(type="dmvae", modalities_specific_dim=2))


def test_joint_encoder_ignores_absent_features_and_takes_subset_axes():
    torch.manual_seed(0)
    joint = JointEncoder([3, 2], 4, [8])
    f = [torch.randn(5, 3), torch.randn(5, 2)]
    mask = torch.tensor([[True, False], [True, True], [False, True]]).unsqueeze(1).expand(3, 5, 2)  # (S, B, N)
    mu, logvar = joint(f, mask)
    assert mu.shape == logvar.shape == (3, 5, 4)
    garbage = [f[0], torch.full_like(f[1], 1e4)]  # the second modality is absent in subset 0
    assert torch.allclose(joint(garbage, mask[:1])[0], mu[:1])
    for s in range(3):  # the subset axis gives what one call per subset gives
        assert torch.allclose(joint(f, mask[s])[0], mu[s], atol=1e-6)


def _private_model(fusion: str, **options):
    torch.manual_seed(0)
    from importlib import import_module

    cls = {"dmvae": "modkit_dmvae.DMVAE", "mmvae_plus": "modkit_mmvae_plus.MMVAEPlus"}[fusion].rsplit(".", 1)
    cls = getattr(import_module(cls[0]), cls[1])
    modalities = {"a": VectorModality("a", VectorConfig(type="vector"), 6), "b": VectorModality("b", VectorConfig(type="vector", dim=3), 6),
                  "c": ClassModality("c", ClassConfig(type="class"), 6)}
    return MultimodalVAE(modalities, cls(modalities, 4 + 3 * 2, cls.Config(type=fusion, modalities_specific_dim=2, **options)), 10).eval()


def test_dmvae_posterior_takes_given_private_parts_and_the_prior_for_the_others():
    model = _private_model("dmvae")
    batch = toy_batch()
    with torch.no_grad():
        experts = model.encode(batch)
        post = model.posterior(batch, ["a"])
    layout = model.fusion.layout
    has_a = batch.present[:, 0]
    w_a = post.mu[0, :, 4:6]
    assert torch.allclose(w_a[has_a], experts.mu[0, has_a, 4:]) and torch.equal(w_a[~has_a], torch.zeros_like(w_a[~has_a]))
    for i in (1, 2):  # not given: N(0, I)
        block = slice(layout.shared + i * 2, layout.shared + (i + 1) * 2)
        assert torch.equal(post.mu[0, :, block], torch.zeros(len(batch), 2)) and torch.equal(post.logvar[0, :, block], torch.zeros(len(batch), 2))


@pytest.mark.parametrize("option", ["joint_prior", "single_prior"])
def test_mmvae_plus_posterior_draws_missing_private_parts_from_the_chosen_prior(option):
    model = _private_model("mmvae_plus", reconstruction_option=option)
    with torch.no_grad():
        model.fusion.modality_prior_logvar["b"].normal_()
        model.fusion.shared_prior_logvar.normal_()
        post = model.posterior(toy_batch(), ["a"])
    scale = post.parts[1].scale[0]  # (B, N·P) private scales
    expected = model.fusion.prior_scale()[4:] if option == "joint_prior" else model.fusion.scale(model.fusion.modality_prior_logvar["b"])[0]
    assert torch.allclose(scale[:, 2:4], expected.expand(len(scale), 2))
