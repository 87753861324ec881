"""modkit.sweep's results API against a small real sweep: each trial's values, seeds, state, folder and metrics
as the runs wrote them, and each point's mean and sd computed here again from the runs' summary.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sweep_helpers import TINY

from modkit import sweep
from modkit.cli.main import main
from modkit.errors import ModkitError

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "digits-poe.yaml"
FAST = [*TINY, "--set", "train.epochs=1", "--set", "data.batch_size=256", "--no-eval"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A 2-point grid × 2 seeds, trained once for the module's tests."""
    out = tmp_path_factory.mktemp("results") / "sweep"
    result = CliRunner().invoke(main, ["sweep", str(RECIPE), *FAST, "--set", "model.latent_dim=4,8", "--set", "seed=0,1",
                                       "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_each_trial_has_its_values_seeds_state_folder_and_metrics(finished):
    results = sweep.load_results(finished)
    assert results.keys == ["model.latent_dim"]
    assert [t.number for t in results.trials] == [0, 1] and all(t.state == "complete" for t in results.trials)
    assert sorted(t.values["model.latent_dim"] for t in results.trials) == ["4", "8"]  # a list's values as typed
    for t in results.trials:
        assert t.folder == finished.resolve() / f"trial-{t.number:04d}" and t.folder.is_dir()
        assert t.seeds == [0, 1] and t.started is not None and t.finished >= t.started
        for run in t.runs:
            assert run.run_dir == t.folder / f"seed-{run.seed}"
            written = summary(run.run_dir)
            assert run.metrics["test/elbo"] == pytest.approx(written["test/elbo"])
            recipe = yaml.safe_load((run.run_dir / "recipe.yaml").read_text())  # what the run was trained with
            assert recipe["model"]["latent_dim"] == int(t.values["model.latent_dim"]) and recipe["seed"] == run.seed
        # the objective Optuna stored is the mean of the seeds' test ELBO
        assert t.value == pytest.approx(np.mean([summary(r.run_dir)["test/elbo"] for r in t.runs]))


def test_each_point_has_mean_and_sample_sd_over_its_seed_runs(finished):
    results = sweep.load_results(finished)
    points = results.points()
    assert [p.values["model.latent_dim"] for p in points] == [t.values["model.latent_dim"] for t in results.trials]
    for point in points:
        elbos = np.array([summary(finished / f"trial-{point.trials[0]:04d}" / f"seed-{s}")["test/elbo"] for s in (0, 1)])
        assert point.n == 2
        assert point.mean("test/elbo") == pytest.approx(elbos.mean())
        assert point.sd("test/elbo") == pytest.approx(elbos.std(ddof=1))


def test_a_study_by_name_and_storage_gives_the_same_results(finished):
    by_folder = sweep.load_results(finished)
    name = json.loads((finished / "sweep.json").read_text())["study"]
    by_name = sweep.load_results(name, storage=f"sqlite:///{finished / 'study.db'}", out=finished)
    assert by_name.trials == by_folder.trials


def test_a_folder_that_holds_no_sweep_is_one_error(tmp_path):
    with pytest.raises(ModkitError, match="is not a sweep folder") as caught:
        sweep.load_results(tmp_path)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_old_import_path_forwards_with_one_warning():
    """``modkit.experiments.sweep`` (the module before it became a package) is ``modkit.sweep``, with a warning."""
    import importlib.util

    found = importlib.util.find_spec("modkit.experiments")
    if found is not None and found.origin:  # this checkout has no such folder: another copy of modkit shadows it
        pytest.skip(f"modkit.experiments is found at {found.origin}, outside this checkout (an older editable install)")
    code = ("import warnings; warnings.simplefilter('always'); import modkit.experiments.sweep as m; "
            "from modkit.experiments.sweep import load_results; print(m.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "modkit.sweep"
    assert "modkit.experiments.sweep moved in modkit 0.2: use modkit.sweep" in out.stderr
    assert out.stderr.count("DeprecationWarning") == 1
