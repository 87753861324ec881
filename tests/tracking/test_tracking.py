"""Tracking read back with the libraries' own readers: tensorboard's EventAccumulator and MLflow's
MlflowClient, against a SQLite store and a PostgreSQL server started by the test (conftest.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.tracking import flatten, open_tracker
from modkit.tracking.base import numbers
from modkit.tracking.mlflow import metric_name
from sweep_helpers import TINY, free_port

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "digits-poe.yaml"
STEPS = ["--set", "train.log_every=5", "--set", "data.batch_size=256"]  # 1437 training items: 6 steps an epoch


def train(out: Path, *sets: str, resume: bool = False):
    args = ["train", "--resume", str(out), *sets] if resume else ["train", str(RECIPE), *TINY, *STEPS, *sets, "--out", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def check_mlflow(uri: str, run_dir: Path) -> None:
    """Params = the resolved recipe, epoch metrics = metrics.jsonl, final metrics = summary.json, files = artifacts."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    resolved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    expected = {k: str(v) for k, v in flatten({k: v for k, v in resolved.items() if k != "tracking"}).items()}
    assert run.data.params == expected
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, round(m.value, 5)) for m in history] == [(r["step"], round(r["train/loss"], 5)) for r in rows]
    summary = json.loads((run_dir / "summary.json").read_text())
    finals = {metric_name(f"final/{k}"): v for k, v in numbers(summary, skip=("epochs", "steps", "processes")).items()}
    assert any("-to-" in name for name in finals)  # cross-modal names, made MLflow-safe
    assert {k: run.data.metrics.get(k) for k in finals} == pytest.approx(finals)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"recipe.yaml", "summary.json", "metrics.jsonl", "samples.png", "checkpoint.safetensors"} <= artifacts
    assert any(a.startswith("events.out.tfevents") for a in artifacts)


@pytest.mark.slow
def test_tensorboard_and_mlflow_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    run_dir = tmp_path / "run"
    train(run_dir, "--set", "train.epochs=2", "--set", f"tracking.mlflow={store}")
    acc = events(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # per epoch: every number of each metrics.jsonl row, at the row's step
    for key in ("train/loss", "train/kl", "lr", "beta"):
        assert [(s.step, round(s.value, 4)) for s in acc.Scalars(key)] == [(r["step"], round(r[key], 4)) for r in rows]
    # per interval of train.log_every steps: the mean over those steps
    assert [s.step for s in acc.Scalars("step/train/loss")] == list(range(5, rows[-1]["step"] + 1, 5))
    assert acc.Tags()["images"] == ["samples"]
    assert "samples/text_summary" in acc.Tags()["tensors"]
    # hparams: the resolved recipe, with the final metrics as the session's results
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["train.lr"].number_value == pytest.approx(1e-3)
    assert start.hparams["model.fusion.type"].string_value == "poe"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert acc.Scalars("final/test/elbo")[0].value == pytest.approx(summary["test/elbo"], rel=1e-6)
    check_mlflow(store, run_dir)


@pytest.mark.postgres
def test_mlflow_postgres(tmp_path, monkeypatch, postgres):
    monkeypatch.chdir(tmp_path)
    uri = postgres.url("mlflow_tracking")
    run_dir = tmp_path / "run"
    train(run_dir, "--set", "train.epochs=1", "--set", f"tracking.mlflow={uri}", "--set", "tracking.experiment=pg")
    check_mlflow(uri, run_dir)
    from mlflow import MlflowClient

    assert MlflowClient(uri).get_experiment_by_name("pg") is not None


@pytest.mark.slow
def test_resume_continues_the_same_runs(tmp_path, monkeypatch):
    """A resumed run continues its MLflow run and replaces, not repeats, TensorBoard's steps."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "modkit.toml").write_text('[modkit]\nruns_dir = "runs"\n[modkit.tracking]\nmlflow = true\n')
    run_dir = tmp_path / "run"
    train(run_dir, "--set", "train.epochs=2")
    first = json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"]
    train(run_dir, "--set", "train.epochs=3", resume=True)
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"] == first
    steps = [s.step for s in events(run_dir).Scalars("train/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 3
    check_mlflow(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", run_dir)  # modkit.toml's default store


def test_a_tracking_failure_is_one_warning(tmp_path, monkeypatch):
    """A database that is down and a disk that fills: one warning each, and the run completes."""
    from modkit.tracking.tensorboard import TensorBoardBackend

    monkeypatch.chdir(tmp_path)
    state = {"calls": 0}
    original = TensorBoardBackend.scalars

    def disk_full(self, values, step):
        state["calls"] += 1
        if state["calls"] > 2:
            raise OSError(28, "No space left on device")
        original(self, values, step)

    monkeypatch.setattr(TensorBoardBackend, "scalars", disk_full)
    down = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/none"
    run_dir = tmp_path / "run"
    result = train(run_dir, "--set", "train.epochs=2", "--set", f"tracking.mlflow={down}")
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.output
    assert "mlflow tracking could not start" in warnings[0] and "tensorboard tracking failed" in warnings[1]
    assert "No space left" in warnings[1]
    assert (run_dir / "summary.json").exists() and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_only_rank0_tracks(tmp_path):
    from modkit.config.recipe import TrackingSpec

    spec = TrackingSpec(mlflow=f"sqlite:///{tmp_path / 'm.db'}")
    assert not open_tracker(spec, {"name": "x"}, tmp_path, 0, main=False, warn=print).active
    assert not list(tmp_path.iterdir())
