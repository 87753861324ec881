"""A tracking password never lands in a run directory, an export or a printed line; a folder given as the MLflow
store becomes a SQLite store inside it (MLflow 3 refuses a folder as a file store)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.errors import redact
from modkit.tracking.mlflow import tracking_uri, with_credentials
from sweep_helpers import TINY

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "digits-poe.yaml"


@pytest.mark.parametrize("text, shown", [
    ("postgresql://bob:s3cr3t@db:5432/x", "postgresql://bob:***@db:5432/x"),
    ("http://u:p@ss@host:5000/x", "http://u:***@host:5000/x"),  # an @ inside the password
    ("cannot reach bob:hunter2@db.example.com", "cannot reach bob:***@db.example.com"),  # no scheme
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_redact_masks_every_password(text, shown):
    assert redact(text) == shown and redact(shown) == shown


def every_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("store", ["postgresql://bob:s3cr3t@127.0.0.1:1/db", "bob:s3cr3t@127.0.0.1"])
def test_a_tracking_password_is_never_written_or_printed(tmp_path, monkeypatch, store):
    import modkit

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(RECIPE), *TINY, "--set", "train.epochs=1", "--set", f"tracking.mlflow={store}",
                                       "--out", str(run)])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning: mlflow")]
    assert len(warning) == 1 and "s3cr3t" not in result.output
    if "://" not in store:  # the warning names the URI it could not use, masked
        assert "'bob:***@127.0.0.1' has no scheme" in warning[0]
    assert "s3cr3t" not in every_text(run) and "bob:***@127.0.0.1" in (run / "recipe.yaml").read_text()
    exported = modkit.load(run, "cpu").export(tmp_path / "exported")
    assert "s3cr3t" not in every_text(exported)


def test_a_masked_uri_takes_its_password_from_mlflows_variables(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    with pytest.raises(RuntimeError, match="MLFLOW_TRACKING_PASSWORD"):
        with_credentials("postgresql://bob:***@db/x")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p/w")
    assert with_credentials("postgresql://bob:***@db/x") == "postgresql://bob:p%2Fw@db/x"
    assert with_credentials("https://bob:***@host:5000") == "https://host:5000"  # basic auth from the variables


def test_a_folder_as_the_mlflow_store_is_a_sqlite_store_inside_it(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    assert tracking_uri("./mlruns") == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(RECIPE), *TINY, "--set", "train.epochs=2", "--set", "tracking.mlflow=./mlruns",
                                       "--out", str(run)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    run_id = json.loads((run / "tracking.json").read_text())["mlflow_run_id"]
    tracked = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").get_run(run_id)
    assert tracked.info.status == "FINISHED" and "train/loss" in tracked.data.metrics
