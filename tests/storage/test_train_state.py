"""The loop's state in a checkpoint: written and read by modkit.storage.train_state alone, checked on the way in."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from modkit.errors import ModkitError
from modkit.storage import checkpoint as checkpoints
from modkit.storage import train_state
from modkit.storage.train_state import GuardState, TrainState


class _Sampler:
    def state_dict(self):
        return {"generator": torch.tensor([1, 2, 3])}


def _saved_checkpoint(run_dir, **overrides):
    """A real checkpoint file: a small model and Adam beside the loop's state."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    random.seed(5)
    np.random.seed(6)
    state = TrainState(epoch=2, step_in_epoch=7, global_step=47, sums={"loss": torch.tensor(12.5), "rec/image": torch.tensor(-3.25)},
                       seen=torch.tensor(96.0, dtype=torch.float64), skipped=torch.tensor(1.0), bad_samples=4)
    rng = train_state.rng_state()
    loop = train_state.write(state, bad_streak=torch.tensor(2.0), guard=GuardState(0.25, 2, 9), rng=rng,
                             rng_ranks=[rng, train_state.rng_state()], world=2)
    loop.update(overrides)
    checkpoints.save_checkpoint(run_dir, checkpoints.layout(loop, model, optimizer, None, _Sampler()))
    return state, rng


def test_written_state_reads_back_equal(tmp_path):
    state, rng = _saved_checkpoint(tmp_path)
    saved = train_state.read(checkpoints.load_checkpoint(tmp_path), tmp_path / checkpoints.CHECKPOINT)
    got = saved.state
    assert (got.epoch, got.step_in_epoch, got.global_step, got.bad_samples) == (2, 7, 47, 4)
    assert set(got.sums) == {"loss", "rec/image"}
    assert all(torch.equal(got.sums[k], state.sums[k]) for k in state.sums)
    assert float(got.seen) == 96.0 and got.seen.dtype == torch.float64 and float(got.skipped) == 1.0
    assert saved.bad_streak == 2.0 and saved.guard == GuardState(0.25, 2, 9) and saved.world == 2
    assert len(saved.rng_ranks) == 2 and torch.equal(saved.rng_ranks[0]["torch"], rng["torch"])
    assert saved.rng_ranks[0]["python"] == rng["python"]
    numpy_state = saved.rng_ranks[0]["numpy"]
    assert numpy_state[0] == rng["numpy"][0] and np.array_equal(numpy_state[1], rng["numpy"][1])
    # the header alone gives the step (what a sweep reads before it resumes a run)
    assert train_state.newest_step(tmp_path / checkpoints.CHECKPOINT) == 47


def test_setting_the_rng_back_replays_the_same_draws(tmp_path):
    _, rng = _saved_checkpoint(tmp_path)
    expected = (torch.rand(3), np.random.rand(), random.random())
    saved = train_state.read(checkpoints.load_checkpoint(tmp_path), tmp_path)
    train_state.set_rng_state(saved.rng_ranks[0])
    again = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


@pytest.mark.parametrize("key, value", [("epoch", "2"), ("global_step", 4.5), ("step_in_epoch", True), ("global_step", -1)])
def test_a_wrong_counter_is_one_line_naming_the_file(tmp_path, key, value):
    _saved_checkpoint(tmp_path, **{key: value})
    with pytest.raises(ModkitError) as caught:
        checkpoints.load_checkpoint(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / checkpoints.CHECKPOINT) in message
    assert f"'{key}' is {value!r}" in message and "not a count" in message
    with pytest.raises(ModkitError, match=f"'{key}'"):  # the weights-only read used by modkit.load says the same
        checkpoints.load_checkpoint(tmp_path, model_only=True)


def test_a_checkpoint_without_rng_or_with_bad_sums_is_refused_by_name(tmp_path):
    where = tmp_path / checkpoints.CHECKPOINT
    _saved_checkpoint(tmp_path)
    ckpt = checkpoints.load_checkpoint(tmp_path)
    with pytest.raises(ModkitError, match="no usable RNG state"):
        train_state.read({**ckpt, "rng": None, "rng_ranks": None}, where)
    with pytest.raises(ModkitError, match="'sums' are not loss terms"):
        train_state.read({**ckpt, "sums": {"loss": 3}}, where)
    with pytest.raises(ModkitError, match="'lr_scale' is 'x'"):
        train_state.read({**ckpt, "lr_scale": "x"}, where)
    with pytest.raises(ModkitError, match=r"checkpoint.safetensors has no 'epoch' counter"):
        train_state.read_counters({k: v for k, v in ckpt.items() if k != "epoch"}, where)
