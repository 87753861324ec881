"""log p(label | wave) for a categorical label, against a brute-force integral.

The wave is probabilistic PCA with a 1-d latent and a sharp likelihood (20 dims, σ = 0.05), so the
paper's prior-sampled denominator log p(wave) misses the narrow posterior with a few hundred prior
draws and comes out far too low: the conditional is then positive, impossible for a discrete label.
The label's logits are linear in z, so log p(label | wave) = log ∫ softmax(a z + c)[label] p(z | wave) dz
with the exact Gaussian posterior p(z | wave), computed on a dense grid.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from ppca_toys import LinearGaussian, orthogonal_loadings, ppca_data  # noqa: E402

from modkit import Batch, Fusion, FusionConfig, Modality, ModalityConfig, MultimodalVAE  # noqa: E402
from modkit.distributions import Categorical  # noqa: E402
from modkit.evaluation.likelihood import likelihood_suite  # noqa: E402

SIGMA, P = 0.05, 20
A, C = torch.tensor([3.0, 0.0, -3.0]), torch.tensor([0.0, 0.5, 0.0])  # three classes, logits a·z + c


class LinearLabel(Modality):
    """A label with logits linear in a 1-d z and an uninformative expert N(0, 1)."""

    def __init__(self, name: str):
        super().__init__(name, ModalityConfig(type="linear_label"), 1)
        self.likelihood = Categorical(event_dims=0)
        self.feature_dim = 1

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(len(x), 1)
        return zeros, zeros

    def decoder_net(self, z: Tensor) -> Tensor:
        return z * A + C

    def placeholder(self) -> Tensor:
        return torch.tensor(0)


def brute_force(wave: LinearGaussian, x: Tensor, labels: Tensor) -> Tensor:
    """log ∫ p(label | z) p(z | x) dz by the trapezoid rule over ±8 posterior standard deviations."""
    mu, logvar = wave.encode(x.float())  # the exact posterior is PoE(expert, prior): orthogonal W
    precision = torch.exp(-logvar.double()) + 1.0
    m, s = (mu.double() * torch.exp(-logvar.double()) / precision)[:, 0], precision[:, 0] ** -0.5
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    z = m[:, None] + s[:, None] * grid  # (B, G)
    log_post = torch.distributions.Normal(m[:, None], s[:, None]).log_prob(z)
    log_lab = torch.log_softmax(z[..., None] * A.double() + C.double(), -1).gather(-1, labels[:, None, None].expand(-1, z.shape[1], 1))[..., 0]
    return torch.log(torch.trapezoid(torch.exp(log_post + log_lab), z, dim=1))


def test_a_positive_discrete_conditional_is_flagged_and_the_better_denominator_matches_brute_force():
    torch.manual_seed(0)
    W = orthogonal_loadings(P, 1, [2.0])
    b = torch.zeros(P, dtype=torch.float64)
    wave, label = LinearGaussian("wave", W, b, SIGMA), LinearLabel("label")
    modalities = {"wave": wave, "label": label}
    model = MultimodalVAE(modalities, Fusion(modalities, 1, FusionConfig(type="poe")), 1)
    x = ppca_data(W, b, SIGMA, 200)
    z = torch.linalg.lstsq(W, x.T).solution.T.float()
    labels = torch.distributions.Categorical(logits=z * A + C).sample()
    batch = Batch({"wave": x.float(), "label": labels}, torch.ones(len(x), 2, dtype=torch.bool))
    truth = brute_force(wave, x, labels)

    out = likelihood_suite(model, [batch], k=200, k_denominator=200, denominator="prior")
    cell = out["log p(label|wave)"]
    assert cell["mean"] > 0.5, cell  # the prior-sampled denominator's artefact, as eval printed it
    assert "impossible for a discrete variable" in cell["warning"] and "log p(label|wave)" in cell["warning"]
    assert cell["best_denominator"] == "posterior" and cell["mean_best"] <= 0
    assert abs(cell["mean_best"] - truth.mean().item()) < 0.02, (cell, truth.mean())
    assert cell["stderr_best"] == cell["stderr_best"] and 0 < cell["stderr_best"] < 0.1
    assert "warning" not in out["log p(wave|label)"]  # a density may be positive: never flagged
    assert "warning" not in out["log p(label)"] and out["log p(label)"]["mean"] <= 0
