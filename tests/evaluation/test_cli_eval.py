"""Every evaluation command end to end on a tiny digits run trained here (2 epochs, small nets)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from modkit.cli.main import main
from tiny_recipes import CPU, tiny_sets

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "digits-poe.yaml"
TINY = tiny_sets(*CPU)
FAST = ["--iw-samples", "20", "--prior-samples", "40", "--joint-samples", "100", "--iw-items", "64"]


def invoke(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "digits"
    result = invoke("train", RECIPE, *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def evaluated(run_dir) -> tuple[str, dict]:
    """``modkit eval`` on the run, once: its output and the eval.json it wrote, read at once (later tests evaluate
    the run again with other metrics), so no test depends on another having run before it."""
    result = invoke("eval", run_dir, *FAST, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return result.output, json.loads((run_dir / "eval.json").read_text())


def test_eval_writes_every_group(run_dir, evaluated):
    output, data = evaluated
    for group in ("likelihood", "coherence", "probe", "relatedness", "reconstruction", "active_units", "judges", "summary"):
        assert data[group], group
    assert set(data["coherence"]["cross"]) == {"image->image", "image->label", "label->image", "label->label",
                                               "image+label->image", "image+label->label"}
    assert data["likelihood"]["log p(image)"]["items"] == 64 and data["likelihood"]["log p(image)"]["mean"] < 0
    assert data["judges"]["image/label"]["kind"] == "classifier" and data["judges"]["image/label"]["balanced_accuracy"] > 0.8
    assert (run_dir / "judges.safetensors").exists() and not (run_dir / "judges.pkl").exists()
    assert "wrote" in output


def test_coherence_matches_an_independent_recomputation(run_dir, evaluated):
    """label→image coherence recomputed item by item from model primitives and the saved judge."""
    from sklearn.metrics import balanced_accuracy_score

    from modkit.runs.loading import load_run

    _, data = evaluated
    run = load_run(run_dir, "cpu")
    from modkit.evaluation.judges import JudgeSet

    judges = JudgeSet.load(run_dir / "judges.safetensors", None)
    judge, reducer = judges.classifiers[("image", "label")], judges.reducers["image"]
    test = run.setup.test
    y, pred = [], []
    with torch.no_grad():
        for i in range(len(test)):
            batch = test.__getitems__([i])
            z = run.model.posterior(batch, ["label"]).mean[0]
            image = run.model.modalities["image"].predict(run.model.modalities["image"].decode(z))
            pred.append(judge.predict(reducer.transform(image.flatten(1).numpy()))[0])
            y.append(int(batch.data["label"][0]))
    expected = balanced_accuracy_score(y, pred)
    assert data["coherence_mean"]["cross"]["label->image"]["label"] == pytest.approx(expected, abs=1e-9)  # decoded from the posterior mean


def test_registered_metric_is_found_and_called(run_dir):
    """A metric plugin: fn(modality) → state with update(predicted, target) and compute()."""
    from modkit.evaluation.suite import EvalSettings, evaluate_run
    from modkit.runs.loading import load_run

    class MeanAbsError:
        def __init__(self):
            self.total, self.n = 0.0, 0

        def update(self, predicted, target):
            self.total += (predicted - target).abs().flatten(1).mean(1).sum().item()
            self.n += len(target)

        def compute(self):
            return self.total / self.n

    calls = []

    def mae(modality):
        calls.append(modality.name)
        return MeanAbsError() if modality.likelihood.name == "bernoulli" else None  # images only

    run = load_run(run_dir, "cpu")
    run.plugins.registry.add_metric("mae", mae)
    result = evaluate_run(run, EvalSettings(metrics=["mae"]))
    assert set(result) >= {"task"} and "coherence" not in result and "likelihood" not in result
    assert set(result["task"]["mae"]) == {"image->image", "label->image", "image+label->image"}
    test = run.setup.test
    batch = test.__getitems__(list(range(len(test))))
    with torch.no_grad():
        z = run.model.posterior(batch, ["label"]).mean[0]
        image = run.model.modalities["image"].predict(run.model.modalities["image"].decode(z))
    expected = (image - batch.data["image"]).abs().flatten(1).mean(1).mean().item()
    assert result["task"]["mae"]["label->image"] == pytest.approx(expected, rel=1e-5)
    assert "label" in calls and "image" in calls
    assert result["summary"]["task/mae/label->image"] == pytest.approx(expected, rel=1e-5)


def test_unknown_metric_is_a_one_line_error(run_dir):
    result = invoke("eval", run_dir, "--metrics", "bleu_typo")
    assert result.exit_code != 0 and "unknown metric 'bleu_typo'" in result.output


def test_generate_label_to_image_and_image_to_label(run_dir, tmp_path):
    result = invoke("generate", run_dir, "--given", "label=seven", "--target", "image", "-n", "4")
    assert result.exit_code == 0, result.output
    png = run_dir / "generated" / "label-seven_to_image.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    digit = tmp_path / "digit.png"  # one real test digit as an 8×8 grey file
    from sklearn.datasets import load_digits

    Image.fromarray((load_digits().images[0] / 16 * 255).astype(np.uint8)).save(digit)
    result = invoke("generate", run_dir, "--given", f"image={digit}", "--target", "label", "-n", "5", "--out", tmp_path / "labels.txt")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "labels.txt").read_text().splitlines()
    assert len(lines) == 5 and all(line in {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"} for line in lines)
    assert "wrote" in result.output


def test_generate_mean_writes_its_own_file(run_dir):
    """--mean once wrote the sampled grid's name, silently replacing it."""
    assert invoke("generate", run_dir, "--given", "label=three", "--target", "image", "-n", "2").exit_code == 0
    sampled = run_dir / "generated" / "label-three_to_image.png"
    before = sampled.read_bytes()
    result = invoke("generate", run_dir, "--given", "label=three", "--target", "image", "-n", "2", "--mean")
    assert result.exit_code == 0 and "label-three_to_image_mean.png" in result.output
    assert (run_dir / "generated" / "label-three_to_image_mean.png").is_file() and sampled.read_bytes() == before


def test_generate_bad_input_is_a_one_line_error(run_dir):
    result = invoke("generate", run_dir, "--given", "label=eleven", "--target", "image")
    assert result.exit_code != 0 and result.output.startswith("error: --given label") and "Traceback" not in result.output
    result = invoke("generate", run_dir, "--given", "colour=red", "--target", "image")
    assert result.exit_code != 0 and "unknown modality 'colour'" in result.output
    result = invoke("generate", run_dir.parent, "--target", "image")
    assert result.exit_code != 0 and "is not a run directory" in result.output


@pytest.mark.parametrize("value", ["x" * 300, "a/" + "y" * 300 + ".png", "nul\0byte"])
def test_generate_given_a_value_no_file_system_accepts_as_a_name(run_dir, value):
    """Over 255 characters (or a NUL byte) once ended in OSError: File name too long from Path(raw).exists()."""
    result = CliRunner().invoke(main, ["generate", str(run_dir), "--given", f"image={value}", "--target", "label"])
    assert result.exit_code == 1 and result.output.startswith("error: --given image") and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = CliRunner().invoke(main, ["generate", str(run_dir), "--given", f"label={value}", "--target", "image", "-n", "1"])
    assert result.exit_code == 1 and "error: --given label" in result.output and "Traceback" not in result.output, result.output


def test_sample_and_report(run_dir):
    result = invoke("sample", run_dir, "-n", "12")
    assert result.exit_code == 0, result.output
    assert (run_dir / "generated" / "prior_samples.png").exists()
    result = invoke("report", run_dir, *FAST)
    assert result.exit_code == 0, result.output
    report = (run_dir / "report.md").read_text()
    for figure in ("loss_curves.png", "prior_samples.png", "conditional_samples.png", "coherence.png",
                   "relatedness_image_label.png", "distance_image_label_label.png"):
        assert (run_dir / "report" / figure).exists(), figure
        assert f"report/{figure}" in report
    for section in ("## Coherence", "## Linear probes", "## Relatedness", "## Log-likelihoods", "## Reconstruction", "## Active units"):
        assert section in report


@pytest.mark.slow
def test_sweep_paired_fraction(tmp_path):
    out = tmp_path / "sweep"
    result = invoke("sweep", RECIPE, *TINY, "--set", "train.epochs=1", "--set", "data.paired_fraction=0.1,1.0",
                    "--metrics", "coherence,probe", "--joint-samples", "50", "--out", out)
    assert result.exit_code == 0, result.output
    table = (out / "sweep.csv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("trial,run,data.paired_fraction")
    assert (out / "sweep.png").exists() and "coherence/given_1" in (out / "sweep.md").read_text()
    assert (out / "trial-0000" / "seed-0" / "eval.json").exists() and (out / "trial-0001" / "seed-0" / "eval.json").exists()


def test_chunking_over_subsets_changes_nothing(run_dir, monkeypatch):
    from modkit.evaluation import suite as evaluation
    from modkit.evaluation.suite import EvalSettings, evaluate_run
    from modkit.runs.loading import load_run

    run = load_run(run_dir, "cpu")
    settings = EvalSettings(metrics=["coherence", "reconstruction"], joint_samples=50)
    whole = evaluate_run(run, settings)
    monkeypatch.setattr(evaluation, "CHUNK_ELEMENTS", 1)  # one subset at a time
    chunked = evaluate_run(run, settings)
    assert chunked["coherence"]["cross"] == whole["coherence"]["cross"]
    for key, cell in whole["reconstruction"].items():
        assert chunked["reconstruction"][key]["items"] == cell["items"]
        assert chunked["reconstruction"][key]["nll"] == pytest.approx(cell["nll"], rel=1e-6)


def test_a_metric_with_another_signature_is_reported_not_fatal(run_dir):
    from modkit.evaluation.suite import EvalSettings, evaluate_run
    from modkit.runs.loading import load_run

    def old_style(pred, target, num_classes):  # a plain function, not fn(modality) -> state
        return 0.0

    run = load_run(run_dir, "cpu")
    run.plugins.registry.add_metric("old_style", old_style)
    result = evaluate_run(run, EvalSettings(metrics=["old_style", "reconstruction"]))
    assert "fn(modality)" in result["task"]["old_style"]["error"] and "TypeError" in result["task"]["old_style"]["error"]
    assert result["reconstruction"]["image->image"]["nll"] > 0


def test_metric_helpers_collect_and_mean(run_dir):
    """Collect hands a corpus-level function everything at once; Mean averages per-sample values."""
    from modkit.evaluation.suite import EvalSettings, evaluate_run
    from modkit.evaluation.task_metrics import Collect, Mean
    from modkit.runs.loading import load_run

    sizes = []

    def n_and_accuracy(pred, target):
        sizes.append(len(target))
        return {"items": len(target), "accuracy": (pred == target).float().mean().item()}

    run = load_run(run_dir, "cpu")
    registry = run.plugins.registry
    registry.add_metric("acc_corpus", lambda m: Collect(n_and_accuracy) if m.name == "label" else None)
    registry.add_metric("acc_mean", lambda m: Mean(lambda p, t: (p == t).float()) if m.name == "label" else None)
    result = evaluate_run(run, EvalSettings(metrics=["acc_corpus", "acc_mean"], batch_size=100))
    corpus, mean = result["task"]["acc_corpus"]["image->label"], result["task"]["acc_mean"]["image->label"]
    assert corpus["items"] == len(run.setup.test) and max(sizes) == len(run.setup.test)  # one call, whole test set
    assert corpus["accuracy"] == pytest.approx(mean, abs=1e-6)  # float32 mean vs float64 mean
