"""Weak supervision: the linear probe learns only from the labels the model was allowed to see."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.evaluation import suite
from modkit.evaluation.metrics import probe as probe_metric
from modkit.evaluation.suite import EvalSettings
from modkit.runs.loading import load_run
from tiny_recipes import CPU, SMALLER, tiny_sets

REPO = Path(__file__).resolve().parents[2]
TINY = tiny_sets(*SMALLER, *CPU, "eval.samples=1")


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "run"
    result = CliRunner().invoke(main, ["train", str(REPO / "recipes" / "digits-poe-partial.yaml"), *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_seen_rows_are_the_rows_where_label_and_image_were_shown_together(partial_run):
    run = load_run(partial_run, device="cpu")
    train = run.setup.train
    names = list(train.modalities)
    rows, presence = train.rows.numpy(), train.presence.numpy()
    label, image = names.index("label"), names.index("image")
    # brute force over the training entries
    alone = {int(r) for r, p in zip(rows, presence) if p[label]}
    paired = {int(r) for r, p in zip(rows, presence) if p[label] and p[image]}
    assert set(run.seen_rows(train.fields["label"]).tolist()) == alone
    assert set(run.seen_rows(train.fields["label"], ["image"]).tolist()) == paired
    assert set(run.seen_rows(train.fields["label"], ["label"]).tolist()) == alone
    # MVAE's protocol at paired_fraction 0.1: every label is shown, about a tenth beside its image
    distinct = len(np.unique(rows))
    assert len(alone) == distinct and 0.05 * distinct < len(paired) < 0.15 * distinct
    assert run.seen_rows("no_such_field") is None


def test_probe_from_the_image_fits_on_paired_labels_only(partial_run, monkeypatch):
    run = load_run(partial_run, device="cpu")
    label_field = run.setup.train.fields["label"]
    calls: list[np.ndarray] = []
    real_probe = probe_metric.linear_probe

    def recording_probe(train_x, train_y, test_x, test_y):
        calls.append(train_y.copy())
        return real_probe(train_x, train_y, test_x, test_y)

    monkeypatch.setattr(probe_metric, "linear_probe", recording_probe)
    settings = EvalSettings(metrics=["probe"], probe_rows=400, max_items=100)
    result = suite.evaluate_run(run, settings)
    subsets, attrs = list(result["probe"]), result["attributes"]
    assert len(calls) == len(subsets) * len(attrs)
    probe_rows = run.view(run.train_rows()).rows.numpy()[suite._cap(len(run.train_rows()), 400, settings.seed)]
    paired = set(run.seen_rows(label_field, ["image"]).tolist())
    n_paired = sum(int(r) in paired for r in probe_rows)
    known = {(s, a): int((calls[i * len(attrs) + k] >= 0).sum()) for i, s in enumerate(subsets) for k, a in enumerate(attrs)}
    assert known[("image", "label")] == n_paired < len(probe_rows) // 4
    assert known[("label", "label")] == len(probe_rows)  # the label alone: every row showed it
    assert result["probe"]["image"]["label"] is not None


def test_coherence_is_printed_beside_its_chance(partial_run):
    result = CliRunner().invoke(main, ["eval", str(partial_run), "--metrics", "coherence", "--joint-samples", "20",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith("coherence/image->label/label")]
    assert lines and lines[0].rstrip().endswith("(chance 0.1)")  # ten balanced digit classes: 1/K
    assert "chance/attributes[*]" in result.output or "chance/label" in result.output
