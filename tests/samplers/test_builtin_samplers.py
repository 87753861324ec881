"""The gmm, maf and iaf latent samplers against their libraries (scikit-learn, zuko) and against known densities;
their stored state; the registry's checks of the new kind."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modkit import LatentSampler, LatentSamplerConfig, PluginError, Registry
from modkit.storage import latent_sampler_file
from modkit_samplers import FlowConfig, GaussianMixtureSampler, GMMConfig, IAFSampler, MAFSampler

MEAN = torch.tensor([2.0, -1.0])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]])


def gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(COV.double()).T


def three_clusters(n: int = 3000, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, -2.0], [0.0, 5.0, 1.0]])
    k = rng.integers(3, size=n)
    return torch.as_tensor(centres[k] + rng.normal(size=(n, 3)) * np.array([0.5, 1.0, 0.3]), dtype=torch.float32)


# -- Gaussian mixture -------------------------------------------------------------------------------
def test_gmm_samples_match_scikit_learns_own_samples():
    """Our torch sampling of the fitted state against GaussianMixture.sample on the same fit: means and
    covariances of 40 000 draws each agree within a few standard errors."""
    from sklearn.mixture import GaussianMixture

    x = three_clusters()
    sampler = GaussianMixtureSampler(3, GMMConfig(type="gmm", n_components=3))
    sampler.fit(x, seed=0)
    reference = GaussianMixture(n_components=3, covariance_type="full", max_iter=2000, tol=1e-3, reg_covar=1e-6,
                                random_state=0).fit(x.double().numpy())
    np.testing.assert_allclose(np.sort(sampler.weights.numpy()), np.sort(reference.weights_), atol=1e-6)
    n = 40_000
    ours = sampler.sample(n, torch.Generator().manual_seed(1)).double().numpy()
    theirs = reference.sample(n)[0]
    sd = theirs.std(0)
    # the difference of two sample means of n draws has standard error sd·√(2/n); allow 5 of them
    assert np.all(np.abs(ours.mean(0) - theirs.mean(0)) < 5 * sd * math.sqrt(2 / n))
    cov_ours, cov_theirs = np.cov(ours.T), np.cov(theirs.T)
    # a covariance entry's standard error is below ~sd_i·sd_j·√(2/n) per sample for these (near-Gaussian-mixture) data
    scale = np.outer(sd, sd) * math.sqrt(2 / n) * 3
    assert np.all(np.abs(cov_ours - cov_theirs) < 5 * scale)


def test_gmm_log_prob_is_scikit_learns_score():
    from sklearn.mixture import GaussianMixture

    x = three_clusters(1000)
    sampler = GaussianMixtureSampler(3, GMMConfig(type="gmm", n_components=3))
    sampler.fit(x, seed=0)
    reference = GaussianMixture(n_components=3, covariance_type="full", max_iter=2000, tol=1e-3, random_state=0).fit(x.double().numpy())
    np.testing.assert_allclose(sampler.log_prob(x[:50]).numpy(), reference.score_samples(x[:50].double().numpy()), rtol=1e-6)


def test_gmm_with_fewer_embeddings_than_components_fits_one_each():
    sampler = GaussianMixtureSampler(2, GMMConfig(type="gmm", n_components=10))
    sampler.fit(gaussian_data(4).float(), seed=0)
    assert sampler.means.shape == (4, 2)


# -- flows -------------------------------------------------------------------------------------------
FLOWS = [MAFSampler, IAFSampler]


@pytest.fixture(scope="module")
def fitted_flows():
    """One MAF and one IAF fitted to a 2-D Gaussian (fitted once: the IAF's density takes D passes)."""
    x = gaussian_data(4000).float()
    out = {}
    for cls in FLOWS:
        sampler = cls(2, FlowConfig(type=cls.__name__, epochs=40, hidden_features=[32, 32]))
        sampler.fit(x, seed=0)
        out[cls] = sampler
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cls", FLOWS, ids=lambda c: c.__name__)
def test_a_flow_fitted_to_a_gaussian_recovers_its_mean_and_covariance(fitted_flows, cls):
    z = fitted_flows[cls].sample(40_000, torch.Generator().manual_seed(3)).double()
    assert torch.allclose(z.mean(0), MEAN.double(), atol=0.06)
    assert torch.allclose(torch.cov(z.T), COV.double(), atol=0.08)


@pytest.mark.slow
@pytest.mark.parametrize("cls", FLOWS, ids=lambda c: c.__name__)
def test_a_flows_density_is_zukos_and_integrates_to_one(fitted_flows, cls):
    sampler = fitted_flows[cls]
    z = sampler.sample(500, torch.Generator().manual_seed(4))
    with torch.no_grad():
        # the density of z is zuko's density of the standardised z, times the standardisation's Jacobian
        zuko_log_prob = sampler.flow().log_prob((z - sampler.loc) / sampler.scale) - sampler.scale.log().sum()
        ours = sampler.log_prob(z)
    assert torch.allclose(ours, zuko_log_prob, atol=1e-5)
    # and the density normalises: a Riemann sum over a grid that holds the Gaussian's mass (±6 sd)
    lo, hi, steps = MEAN - 6 * COV.diag().sqrt(), MEAN + 6 * COV.diag().sqrt(), 201
    axes = [torch.linspace(float(lo[i]), float(hi[i]), steps) for i in range(2)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    cell = float((axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0]))
    with torch.no_grad():
        mass = float(sampler.log_prob(grid).exp().sum() * cell)
    assert mass == pytest.approx(1.0, abs=0.02)
    # the fit is close to the true density where the data are
    truth = torch.distributions.MultivariateNormal(MEAN, COV).log_prob(z)
    with torch.no_grad():
        assert float((ours - truth).abs().mean()) < 0.1


# -- state: store, load, identical draws ------------------------------------------------------------
def fitted(name: str):
    x = three_clusters(400)
    if name == "gmm":
        sampler = GaussianMixtureSampler(3, GMMConfig(type="gmm", n_components=3))
    else:
        sampler = {"maf": MAFSampler, "iaf": IAFSampler}[name](3, FlowConfig(type=name, epochs=2, hidden_features=[16]))
    sampler.fit(x, seed=0)
    return sampler


@pytest.mark.parametrize("name", ["gmm", "maf", "iaf"])
def test_store_then_load_draws_identical_samples(tmp_path, name):
    sampler = fitted(name)
    config = {"sampler": name, "options": sampler.config.model_dump(mode="json", exclude={"type"}), "latent_dim": 3}
    latent_sampler_file.write(tmp_path, name, sampler.state_dict(), config)
    state, stored = latent_sampler_file.read(tmp_path, name)
    assert stored == config
    again = type(sampler).restore(3, type(sampler).Config(type=name, **stored["options"]), state)
    a = sampler.sample(64, torch.Generator().manual_seed(7))
    b = again.sample(64, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, sampler.sample(64, torch.Generator().manual_seed(8)))  # the generator does matter


def test_a_state_from_another_configuration_is_refused():
    sampler = fitted("maf")
    with pytest.raises(RuntimeError):
        MAFSampler.restore(3, FlowConfig(type="maf", hidden_features=[8]), sampler.state_dict())
    with pytest.raises(ValueError):
        GaussianMixtureSampler.restore(2, GMMConfig(type="gmm"), fitted("gmm").state_dict())


def test_stored_files_are_data_only(tmp_path):
    """safetensors + JSON: the tensor file is a safetensors file of this kind, the config plain JSON."""
    import json

    from modkit.storage import state_file

    sampler = fitted("gmm")
    path = latent_sampler_file.write(tmp_path, "gmm", sampler.state_dict(), {"sampler": "gmm", "options": {}, "latent_dim": 3})
    assert path == tmp_path / "samplers" / "gmm.safetensors"
    assert state_file.header(path)[state_file.KIND_KEY] == "latent sampler"
    assert json.loads((tmp_path / "samplers" / "gmm.json").read_text())["sampler"] == "gmm"
    assert latent_sampler_file.stored(tmp_path) == ["gmm"]


# -- the registry kind --------------------------------------------------------------------------------
class Fine(LatentSampler):
    """A sampler that does nothing."""


class NoConfig(LatentSampler):
    Config = dict  # type: ignore[assignment]


class NotASampler:
    Config = LatentSamplerConfig


@pytest.mark.parametrize("obj, says", [
    (Fine(2, LatentSamplerConfig(type="fine")), "not a class"),
    (NotASampler, "not a subclass of modkit.LatentSampler"),
    (NoConfig, "not a subclass of modkit.LatentSamplerConfig"),
])
def test_add_latent_sampler_checks_the_class(obj, says):
    registry = Registry().staged("someplugin", "somepackage")
    with pytest.raises(PluginError, match=f"plugin 'someplugin' registers latent_sampler 'x'.*{says}"):
        registry.add_latent_sampler("x", obj)


def test_add_latent_sampler_registers_and_refuses_a_clash():
    registry = Registry().staged("a", "pa")
    registry.add_latent_sampler("fine", Fine)
    assert registry.get("latent_sampler", "fine") is Fine and registry.names("latent_sampler") == ["fine"]
    with pytest.raises(PluginError, match="already registered"):
        registry.add_latent_sampler("fine", Fine)
