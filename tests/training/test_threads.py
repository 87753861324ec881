"""train.threads (2 busy cores can be ten times slower with 2 threads than with 1): what ``auto`` chooses, that training applies it, and that the losses do not depend on it."""
import os

import pytest
import torch

from modkit.config.recipe import load_recipe
from modkit.errors import RecipeError
from modkit.plugins.loader import plugins_for
from modkit.training.threads import SPLIT_WORTH, choose_threads, largest_operator, usable_cores
from modkit.runs.lifecycle import make_trainer

CPU = torch.device("cpu")


@pytest.fixture
def restore_threads():
    """torch's count and every BLAS pool's limit as they were: a leaked 2-thread BLAS changes later tests' sums."""
    from threadpoolctl import threadpool_limits

    from modkit.training.threads import LATER_ENV

    before = torch.get_num_threads()
    env = {name: os.environ.get(name) for name in LATER_ENV}  # apply_threads writes them for libraries loaded later
    with threadpool_limits(limits=None):  # restores the pools' original limits on exit
        yield
    torch.set_num_threads(before)
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_auto_uses_one_thread_for_small_operators_and_respects_the_environment():
    small = torch.nn.Linear(256, 256)
    assert largest_operator(small, 64) == 256 * 256 * 64 < SPLIT_WORTH
    assert choose_threads("auto", CPU, small, 64, environ={}) == 1
    big = torch.nn.Linear(4096, 4096)
    assert largest_operator(big, 64) >= SPLIT_WORTH
    assert choose_threads("auto", CPU, big, 64, environ={}, load=0.0) == usable_cores()  # an idle machine: every core
    # a loaded one: only the cores the load leaves free, never fewer than one
    assert choose_threads("auto", CPU, big, 64, environ={}, load=usable_cores() + 2.0) == 1
    assert choose_threads("auto", CPU, big, 64, environ={}, load=usable_cores() - 1.0) == min(usable_cores(), 1)
    assert choose_threads("auto", CPU, small, 64, environ={}, load=0.0) == 1
    assert choose_threads("auto", CPU, small, 64, environ={"OMP_NUM_THREADS": "3"}) is None  # the user chose
    assert choose_threads("auto", torch.device("cuda"), small, 64, environ={}) is None  # CPU only launches kernels
    assert choose_threads(3, CPU, small, 64, environ={"OMP_NUM_THREADS": "1"}) == 3  # a number wins


@pytest.mark.parametrize("value", ["0", "x", "true", "1.5"])
def test_bad_threads_value_is_one_clear_recipe_error(tiny_recipe, value):
    with pytest.raises(RecipeError, match=r"train\.threads.*auto or a whole number"):
        load_recipe(tiny_recipe, [f"train.threads={value}"])


def _train(recipe_path, run_dir, sets):
    run_dir.mkdir()
    recipe, resolved = load_recipe(recipe_path, sets)
    trainer = make_trainer(recipe, resolved, plugins_for(recipe.plugins, []), run_dir, CPU, echo=lambda *a: None)
    threads = torch.get_num_threads()
    trainer.fit()
    return threads, [row["train/loss"] for row in trainer.rows]


@pytest.mark.slow
def test_trainer_applies_threads_and_losses_do_not_depend_on_them(tiny_recipe, tmp_path, monkeypatch, restore_threads):
    from threadpoolctl import threadpool_info

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(2)  # torch's default on a 2-core machine
    auto_threads, auto_losses = _train(tiny_recipe, tmp_path / "auto", [])
    assert auto_threads == 1  # the tiny MLPs' operators are far too small to split
    # numpy's BLAS (scikit-learn's probes and judges) too, and the libraries loaded later read the environment
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    two_threads, two_losses = _train(tiny_recipe, tmp_path / "two", ["train.threads=2"])
    assert two_threads == 2
    assert auto_losses == pytest.approx(two_losses, rel=1e-5)  # the same training to rounding


@pytest.mark.slow
@pytest.mark.parametrize("threads, expected", [("auto", 1), ("3", 3)])
def test_eval_and_report_apply_the_runs_thread_policy(tmp_path, monkeypatch, restore_threads, threads, expected):
    """``modkit eval`` and ``modkit report`` set the count the run's ``train.threads`` asks for, as training did."""
    import yaml

    from run_helpers import cli, tiny_raw

    raw = tiny_raw()
    raw["train"]["threads"] = threads if threads == "auto" else int(threads)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    assert cli("train", recipe, "--out", run).exit_code == 0
    for command in (["eval", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu"],
                    ["report", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu"]):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # a fresh shell's: training wrote them
            monkeypatch.delenv(name, raising=False)
        torch.set_num_threads(2)  # neither 1 nor 3: what the command finds is not what it leaves
        result = cli(*command)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == expected, command[0]
