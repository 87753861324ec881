"""The CUDA-path options run on CPU: bf16/fp16 autocast, torch.compile of the step, fused Adam;
and the perf rewrites compute what they replaced."""
from __future__ import annotations

import math

import pytest
import torch
import yaml

from modkit.training.accel import accelerate
from modkit.errors import RecipeError
from modkit.core.gaussian import Experts, product_of_experts
from modkit.core.likelihoods import Bernoulli
from modkit.plugins.loader import load_plugins
from modkit.config.recipe import load_recipe
from modkit.runs.lifecycle import make_trainer


def tiny_trainer(tmp_path, recipe_path, **train):
    raw = yaml.safe_load(recipe_path.read_text())
    raw["train"].update(train, device="cpu", progress=False)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    recipe, resolved = load_recipe(path)
    return make_trainer(recipe, resolved, load_plugins(), tmp_path / "run", "cpu", echo=lambda *a, **k: None)


def train_steps(trainer, steps: int = 3) -> list[float]:
    batches = EpochBatches(trainer)
    losses = []
    for _ in range(steps):
        terms, _ = trainer.step(next(batches), 1.0)
        losses.append(float(terms["loss"]))
    return losses


def EpochBatches(trainer):
    trainer.batches.set_epoch(0)
    return iter(trainer.loader)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_trains_on_cpu_and_keeps_fusion_math_float32(tmp_path, tiny_recipe, amp):
    trainer = tiny_trainer(tmp_path, tiny_recipe, amp=amp)
    seen = {}
    original = trainer.model.fusion.loss

    def spy(model, batch, plan, beta):
        experts = model.encode(batch)
        seen["expert"] = experts.mu.dtype
        seen["poe"] = product_of_experts(experts, plan.mask)[0].dtype
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return original(model, batch, plan, beta)

    trainer.model.fusion.loss = spy
    losses = train_steps(trainer)
    assert all(math.isfinite(v) for v in losses)
    assert seen["autocast"] and seen["expert"] == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert seen["poe"] == torch.float32
    assert trainer.accel.scaler.is_enabled() == (amp == "fp16")
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast, not a cast of the weights


def test_poe_under_autocast_equals_float32_poe():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    present = torch.rand(5, 3) > 0.3
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    ref = product_of_experts(Experts(mu, logvar, present), mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = product_of_experts(Experts(mu, logvar, present), mask)
    for a, b in zip(ref, got):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_compile_runs_the_step_and_keeps_parameter_names(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.setenv("MODKIT_COMPILE_BACKEND", "eager")  # dynamo tracing without a C++ compile: seconds, not minutes
    plain = tiny_trainer(tmp_path / "a", tiny_recipe)
    compiled = tiny_trainer(tmp_path / "b", tiny_recipe, compile=True)
    assert list(plain.model.state_dict()) == list(compiled.model.state_dict())
    torch._dynamo.reset()
    torch.manual_seed(0)
    a = train_steps(plain, 2)
    torch.manual_seed(0)
    b = train_steps(compiled, 2)
    assert all(math.isfinite(v) for v in b)
    assert a == pytest.approx(b, rel=1e-4)  # same seed, same model init (seeded trainer): same losses


def test_trainer_uses_fused_adam_on_cpu(tmp_path, tiny_recipe):
    trainer = tiny_trainer(tmp_path, tiny_recipe)
    assert trainer.optimizer.defaults.get("fused") is True


def test_accelerate_rejects_unknown_amp():
    with pytest.raises(ValueError):
        accelerate(torch.nn.Linear(2, 2), torch.device("cpu"), amp="int8")


def test_recipe_names_a_bad_amp_key(tmp_path, tiny_recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(tiny_recipe, ["train.amp=fp8"])
    assert "train.amp" in str(err.value)


def test_bernoulli_log_prob_matches_the_closed_form():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 1, 5, 5)
    x = (torch.rand(4, 1, 5, 5) > 0.5).float()
    p = torch.sigmoid(logits.double())
    expected = (x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(2).sum(-1)
    got = Bernoulli(event_dims=3).log_prob(logits, x)
    assert got.shape == (3, 4)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)
    half = Bernoulli(event_dims=3).log_prob(logits.to(torch.bfloat16), x)
    assert half.dtype == torch.float32  # the 75-term sum is taken in float32


@pytest.mark.parametrize("prior", [True, False])
def test_poe_rewrite_matches_brute_force_per_subset(prior):
    """The matrix-product PoE against a loop over subsets and samples in float64."""
    torch.manual_seed(2)
    n, b, d = 4, 6, 3
    mu, logvar = torch.randn(n, b, d), torch.randn(n, b, d)
    present = torch.rand(b, n) > 0.25
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    got_mu, got_logvar = product_of_experts(Experts(mu, logvar, present), mask, prior=prior)
    per_sample = product_of_experts(Experts(mu, logvar, present), mask.unsqueeze(1).expand(-1, b, -1), prior=prior)
    for s in range(len(mask)):
        for j in range(b):
            members = [i for i in range(n) if mask[s, i] and present[j, i]]
            if not members and not prior:
                continue
            precision = sum((torch.exp(-logvar[i, j].double()) for i in members), torch.zeros(d, dtype=torch.float64))
            weighted = sum((torch.exp(-logvar[i, j].double()) * mu[i, j].double() for i in members), torch.zeros(d, dtype=torch.float64))
            precision = precision + (1.0 if prior else 0.0)
            torch.testing.assert_close(got_mu[s, j].double(), weighted / precision, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got_logvar[s, j].double(), -torch.log(precision), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(per_sample[0][s, j], got_mu[s, j], rtol=1e-5, atol=1e-6)


def test_kl_standard_normal_matches_torch_distributions_and_its_gradients():
    torch.manual_seed(3)
    mu = torch.randn(5, 7, 4, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(5, 7, 4, dtype=torch.float64, requires_grad=True)
    from modkit.core.gaussian import kl_standard_normal

    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    got = kl_standard_normal(mu, logvar)
    torch.testing.assert_close(got, expected)
    weights = torch.rand(5, 7, dtype=torch.float64)
    g_expected = torch.autograd.grad((expected * weights).sum(), (mu, logvar))
    g_got = torch.autograd.grad((kl_standard_normal(mu, logvar) * weights).sum(), (mu, logvar))
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(kl_standard_normal, (mu[:2, :2], logvar[:2, :2]))
