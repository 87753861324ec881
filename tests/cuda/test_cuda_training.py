"""Training on CUDA through the public API (``modkit.train``): every registered fusion, in float32 and with
``train.amp: bf16`` and ``train.compile: true``; a checkpoint written on the GPU read on the CPU; and the
promise that a steady-state training step never waits for the host (``torch.cuda.set_sync_debug_mode``)."""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

import modkit
from cuda_helpers import CUDA, DEVICE, ON_CUDA, compile_env, finite, metrics, registered_fusions, tiny_recipe

pytestmark = CUDA

#: (train.amp, train.compile): float32 eager, bf16 autocast, and bf16 under torch.compile (inductor on CUDA)
CONFIGS = {"fp32": {}, "bf16": {"amp": "bf16"}, "bf16-compiled": {"amp": "bf16", "compile": True}}


def train(raw: dict, out: Path, **overrides):
    return modkit.train(raw, out=out, overrides=overrides or None, echo=lambda *_: None)


@pytest.fixture(scope="module")
def fp32_losses() -> dict[str, float]:
    """The float32 run's epoch loss per fusion, the reference the accelerated runs are held to (one run each)."""
    return {}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("fusion", registered_fusions())
def test_training_runs_on_cuda(fusion, config, fp32_losses, tmp_path, monkeypatch):
    """One epoch of three steps (64, 64, 52 samples: the short last batch is a second shape for compile).

    Every step must be taken (no step skipped as non-finite), the weights must stay on the card, and the epoch's
    loss under bf16 (and compiled) must be within 10 % of the float32 run's from the same seed: bf16 keeps 8
    mantissa bits (relative rounding 4e-3) in the networks while the fusion math stays float32, and a compiled
    forward draws its noise differently, so small differences are expected; a broken cast or a lost term moves
    the loss by far more (a digits ELBO at initialisation is hundreds of nats, dominated by the 64 pixels).
    """
    if CONFIGS[config].get("compile"):
        compile_env(monkeypatch)
    if config != "fp32" and fusion not in fp32_losses:
        fp32_run = train(tiny_recipe(fusion), tmp_path / "fp32")
        fp32_losses[fusion] = metrics(fp32_run.run_dir)[-1]["train/loss"]
    run = train(tiny_recipe(fusion, **CONFIGS[config]), tmp_path / config)
    rows = metrics(run.run_dir)
    summary = json.loads((Path(run.run_dir) / "summary.json").read_text())
    assert summary["device"].startswith(DEVICE) and summary["steps"] == 3 * run.recipe.train.epochs, summary
    assert summary["skipped_steps"] == 0 and "skipped_steps" not in rows[-1], rows
    assert all(finite(v) for k, v in rows[-1].items() if k.startswith("train/")), rows[-1]
    assert {p.device.type for p in run.model.parameters()} == {torch.device(DEVICE).type}
    assert {p.dtype for p in run.model.parameters()} == {torch.float32}  # autocast casts activations, never weights
    loss = rows[-1]["train/loss"]
    if config == "fp32":
        fp32_losses[fusion] = loss
    else:
        ref = fp32_losses[fusion]
        assert abs(loss - ref) <= 0.10 * abs(ref), f"{fusion} {config}: epoch loss {loss} against float32 {ref}"


def test_checkpoint_written_on_cuda_loads_on_cpu(tmp_path):
    """A run trained on the GPU, loaded with ``device="cpu"``: every weight equal to the GPU copy (a copy, so
    bit for bit), and the model's posterior means on a test batch equal within float32 rounding of a
    forward pass (cuBLAS and the CPU's BLAS sum in different orders: 1e-4 relative on 32-unit layers)."""
    run = train(tiny_recipe("mopoe"), tmp_path / "run")
    on_cpu = modkit.load(run.run_dir, device="cpu")
    gpu_state, cpu_state = run.model.state_dict(), on_cpu.model.state_dict()
    assert gpu_state.keys() == cpu_state.keys()
    for key, value in cpu_state.items():
        assert value.device.type == "cpu"
        assert torch.equal(value, gpu_state[key].cpu()), key
    given = {"image": torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)).round().numpy(), "label": "seven"}
    for name in ("image", "label"):  # each modality's expert: (μ, log σ²) of its encoder
        one = {name: given[name]}
        on_gpu, here = run.encode(one), on_cpu.encode(one)
        for part in ("mean", "logvar"):
            a, b = getattr(on_gpu, part, None), getattr(here, part, None)
            if a is None:  # a mixture posterior (MoPoE): its components
                a, b = getattr(on_gpu.components, part), getattr(here.components, part)
            assert a.device.type == torch.device(DEVICE).type and b.device.type == "cpu"
            torch.testing.assert_close(b, a.cpu(), rtol=1e-4, atol=1e-5)


@contextlib.contextmanager
def sync_debug(mode: str):
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@pytest.mark.skipif(not ON_CUDA, reason="torch.cuda.set_sync_debug_mode needs CUDA (a CPU dry run cannot check host syncs)")
@pytest.mark.parametrize("fusion,amp", [("poe", "off"), ("mopoe", "off"), ("mopoe", "bf16")])
def test_steady_state_steps_never_sync_the_host(fusion, amp, tmp_path, monkeypatch):
    """From the second epoch on, everything the training loop does between its allowed reads runs with
    ``set_sync_debug_mode("error")``: the pinned non-blocking batch copy, the subset plan's copy, forward,
    backward, the gradient check, the fused Adam step with its on-device skip flag and the on-device epoch sums.
    A ``.item()``, a ``bool(tensor)``, a pageable copy or a ``nonzero`` there raises. The reads the trainer is
    allowed (once per ``log_every`` steps, once per epoch, a checkpoint) run with the mode off."""
    from modkit.training.trainer import Trainer

    armed = {"on": False, "steps": 0}
    run_epoch, step = Trainer.run_epoch, Trainer.step

    def guarded_epoch(self):
        armed["on"] = self.state.epoch >= 1  # the first epoch warms up (allocator, cuBLAS handles, lazy state)
        mode = "error" if armed["on"] else 0
        with sync_debug(mode):
            run_epoch(self)

    def counted_step(self, batch, beta):
        if armed["on"]:
            assert torch.cuda.get_sync_debug_mode() == 2  # the mode really is on inside the step
            armed["steps"] += 1
        return step(self, batch, beta)

    def allowed(method):
        def wrapped(self, *args, **kwargs):
            with sync_debug(0):
                return method(self, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(Trainer, "run_epoch", guarded_epoch)
    monkeypatch.setattr(Trainer, "step", counted_step)
    for name in ("on_interval", "end_epoch", "save"):
        monkeypatch.setattr(Trainer, name, allowed(getattr(Trainer, name)))
    raw = tiny_recipe(fusion, amp=amp, epochs=3, log_every=2)
    run = train(raw, tmp_path / "run")
    assert armed["steps"] == 6, armed  # epochs 2 and 3, three steps each, all under the mode
    assert json.loads((Path(run.run_dir) / "summary.json").read_text())["skipped_steps"] == 0


def test_device_auto_picks_the_card(tmp_path):
    run = train(tiny_recipe("poe", device="auto"), tmp_path / "run")
    summary = json.loads((Path(run.run_dir) / "summary.json").read_text())
    assert summary["device"].startswith("cuda" if ON_CUDA else "cpu"), summary


def test_likelihood_chunks_on_the_card_match_one_pass_on_the_cpu(tmp_path, monkeypatch):
    """``importance_log_likelihood`` on the card in 16 chunks of k (its running logaddexp and shifted moments)
    against the same draws scored in one pass on the CPU. The draws are recorded as the estimator makes them,
    so the two differ only by float32 rounding: log-weights of a few hundred nats carry ~1e-5 relative error,
    hence 1e-4 relative on log p and on the log-weight variance."""
    import copy

    from modkit.core.gaussian import DiagGaussian
    from modkit.evaluation.likelihood import _log_lik, importance_log_likelihood, output_elements, prior_of

    run = train(tiny_recipe("poe"), tmp_path / "run")
    model = run.model.eval()
    b, k, names = 32, 1000, ["image", "label"]
    batch = run.setup.test.__getitems__(list(range(b)))
    draws: list[torch.Tensor] = []
    rsample = DiagGaussian.rsample

    def recorded(self, n=None, generator=None):
        z = rsample(self, n, generator)
        draws.append(z.detach())
        return z

    monkeypatch.setattr(DiagGaussian, "rsample", recorded)
    with torch.no_grad():
        got = importance_log_likelihood(model, batch.to(model.device), names, names, k,
                                        chunk_elements=output_elements(model, names) * b * 64)
    monkeypatch.setattr(DiagGaussian, "rsample", rsample)
    assert len(draws) == 16 and got.log_p.device.type == torch.device(DEVICE).type  # ⌈1000 / 64⌉ chunks
    z = torch.cat([d.reshape(d.shape[0], b, -1) for d in draws]).cpu()
    cpu = copy.deepcopy(model).cpu()
    with torch.no_grad():
        q = cpu.fusion.posterior(cpu.encode(batch), cpu.subset_mask(names))
        log_w = _log_lik(cpu, z, batch, names, shared=False) + prior_of(cpu).log_prob(z) - q.log_prob(z.unsqueeze(1)).reshape(k, b)
    w = log_w.double()
    want = torch.logsumexp(w, 0) - math.log(k)
    torch.testing.assert_close(got.log_p.double().cpu(), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.log_w_var.double().cpu(), w.var(0), rtol=1e-4, atol=1e-4)
