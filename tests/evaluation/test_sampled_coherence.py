"""Coherence as the papers measure it: z ~ q(z | X_S), the target decoded and judged by a classifier fixed per
dataset. Checked against an independent classifier (scikit-learn's logistic regression on the real digits) on
what ``modkit generate`` draws, and the judges' provenance and sharing across runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import modkit
from modkit.cli.main import main
from modkit.errors import ModkitError
from modkit.evaluation import judges as judges_module
from modkit.evaluation.judges import DATASET_JUDGES_KIND, DatasetJudges, LinearClassifier
from modkit.evaluation.suite import EvalSettings, evaluate_run
from modkit.reporting.generation import generate_renders
from modkit.runs.loading import load_run

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FAST = dict(metrics=["coherence"], joint_samples=200, batch_size=256)


def independent_classifier():
    """Logistic regression on scikit-learn's own copy of the digits (pixels scaled to [0, 1] as the dataset does)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    return LogisticRegression(max_iter=3000).fit(digits.data / 16.0, digits.target)


def generated_accuracy(run, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images generated from each label as ``modkit generate --given label=NAME --target image`` draws them;
    the independent classifier's verdicts (10, n)."""
    clf = independent_classifier()
    torch.manual_seed(seed)
    verdicts = []
    for name in CLASSES:
        renders = generate_renders(run, {"label": name}, "image", n)
        x = np.stack([r[..., 0].reshape(-1) for r in renders])  # grey images rendered as RGB: one channel is the image
        verdicts.append(clf.predict(x))
    return np.stack(verdicts), np.arange(10)[:, None]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coherence") / "digits"
    sets = ["train.epochs=12", "train.progress=false", "train.device=cpu", "model.beta.anneal_epochs=6"]
    modkit.train(str(REPO / "recipes" / "digits-poe.yaml"), sets, out=out, echo=lambda s: None)
    return out


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_eval_coherence_is_what_generate_shows(trained):
    """Eval's sampled label → image coherence equals an independent classifier's accuracy on ``generate``'s
    images within sampling error; the posterior-mean variant is kept under its own name."""
    run = load_run(trained, torch.device("cpu"))
    result = evaluate_run(run, EvalSettings(coherence_draws=4, **FAST))
    coherence = result["coherence"]
    assert coherence["draws"] == 4 and coherence["method"].startswith("sampled")
    sampled = coherence["cross"]["label->image"]["label"]
    mean = result["coherence_mean"]["cross"]["label->image"]["label"]
    assert result["summary"]["coherence/label->image/label"] == sampled
    assert result["summary"]["coherence_mean/label->image/label"] == mean

    n = 100
    verdicts, truth = generated_accuracy(run, n)
    independent = float((verdicts == truth).mean())  # n per class: the plain mean is the class-balanced accuracy
    items = coherence["items"]["label->image"] * coherence["draws"]
    p = (independent + sampled) / 2
    sigma = np.sqrt(p * (1 - p) / (10 * n) + p * (1 - p) / items)
    assert abs(independent - sampled) <= 3 * sigma + 1e-9, (independent, sampled, sigma)
    # the two measures are not the same number on this model: a posterior-mean image is the best case
    assert mean >= sampled - 3 * sigma


def test_sampled_coherence_draws_are_seeded_per_subset(trained):
    """A subset's samples do not depend on which other subsets are evaluated, and the same seed repeats them."""
    run = load_run(trained, torch.device("cpu"))
    both = evaluate_run(run, EvalSettings(**FAST))["coherence"]["cross"]
    one = evaluate_run(run, EvalSettings(subsets="label", **FAST))["coherence"]["cross"]
    assert one["label->image"] == both["label->image"]
    other = evaluate_run(run, EvalSettings(subsets="label", **{**FAST, "seed": 1}))["coherence"]["cross"]
    assert other["label->image"] != both["label->image"]


def test_the_dataset_judges_ship_with_their_provenance_and_ceiling():
    """The digits plugin's judges file is numbers only, says how it was made, and its ceiling is what an
    independent refit of the same classifier on the same split scores."""
    from modkit.storage import state_file

    path = REPO / "plugins" / "modkit_digits" / "judges.safetensors"
    assert state_file.header(path)[state_file.KIND_KEY] == DATASET_JUDGES_KIND
    fixed = DatasetJudges.load(path)
    for key in ("command", "commit", "date", "machine", "scikit-learn", "train_rows", "test_rows"):
        assert key in fixed.provenance
    assert fixed.features["image"]["dim"] == 64
    ceiling = fixed.scores["image/label"]["balanced_accuracy"]
    assert 0.9 < ceiling <= 1.0
    # the stored classifier predicts real test digits as often right as its stored ceiling says
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    pred = fixed.classifiers[("image", "label")].predict(fixed.reducers["image"].transform(x))
    assert (pred == y).mean() > ceiling - 0.05


def test_the_shapes_judges_cover_what_its_parser_does_not_read():
    """The shapes plugin reads generated images and captions itself (kind ``dataset``); its shipped file holds
    classifier judges for the mask alone, fitted on the recipe's real training split and scored on its test split."""
    fixed = DatasetJudges.load(REPO / "plugins" / "modkit_shapes" / "judges.safetensors")
    assert set(fixed.reducers) == {"mask"} and fixed.provenance["train_rows"] == 3200 and fixed.provenance["test_rows"] == 800
    assert ("mask", "label") in fixed.classifiers and fixed.identity["dataset"]["type"] == "shapes"
    assert all(0.0 <= v["balanced_accuracy"] <= 1.0 for v in fixed.scores.values())


def test_every_run_on_the_dataset_uses_the_same_judges(trained, tmp_path):
    """Judges come from the dataset plugin's file, not from the run; the run records which."""
    run = load_run(trained, torch.device("cpu"))
    result = evaluate_run(run, EvalSettings(**FAST))
    source = result["judge_source"]
    assert source["classifiers"] == "dataset plugin"
    import modkit_digits  # the installed plugin's own folder: the checkout's plugins/ in an editable install, else site-packages

    assert Path(source["file"]) == Path(modkit_digits.__file__).parent / "judges.safetensors"
    fixed = DatasetJudges.load(source["file"])
    assert result["judges"]["image/label"]["balanced_accuracy"] == fixed.scores["image/label"]["balanced_accuracy"]
    assert result["summary"]["ceiling/image/label"] == fixed.scores["image/label"]["balanced_accuracy"]


def test_without_a_shipped_file_the_judges_are_fitted_once_and_cached(trained, monkeypatch, tmp_path):
    monkeypatch.setattr(judges_module, "shipped_judges_path", lambda source: None)
    run = load_run(trained, torch.device("cpu"))
    first = evaluate_run(run, EvalSettings(**FAST))
    assert first["judge_source"]["classifiers"] == "fitted now, cached"
    cached = Path(first["judge_source"]["file"])
    assert cached.is_file() and cached.parent == tmp_path / "cache" / "judges"
    second = evaluate_run(run, EvalSettings(**FAST))
    assert second["judge_source"]["classifiers"] == "cache"
    assert second["judges"]["image/label"]["balanced_accuracy"] == first["judges"]["image/label"]["balanced_accuracy"]


def test_a_named_judge_scores_instead(trained, tmp_path):
    """A user's own classifier, as a dataset judges file, is the judge: one that calls every image a zero scores
    exactly chance on label → image."""
    fixed = DatasetJudges.load(REPO / "plugins" / "modkit_digits" / "judges.safetensors")
    clf = fixed.classifiers[("image", "label")]
    zero = np.zeros_like(clf.coef)
    intercept = np.where(clf.classes == 0, 1.0, 0.0)
    fixed.classifiers[("image", "label")] = LinearClassifier(zero, intercept, clf.classes)
    path = tmp_path / "mine.safetensors"
    fixed.save(path)
    run = load_run(trained, torch.device("cpu"))
    result = evaluate_run(run, EvalSettings(judges=str(path), **FAST))
    assert result["judge_source"]["classifiers"] == "named"
    assert result["coherence"]["cross"]["label->image"]["label"] == pytest.approx(0.1)
    with pytest.raises(ModkitError, match="does not exist"):
        evaluate_run(run, EvalSettings(judges=str(tmp_path / "nope.safetensors"), **FAST))
    # from the command line: a bad file is one line, no traceback
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    outcome = CliRunner().invoke(main, ["eval", str(trained), "--device", "cpu", "--metrics", "coherence", "--joint-samples", "10",
                                        "--judges", str(bad)])
    assert outcome.exit_code != 0 and "Traceback" not in outcome.output
    assert outcome.output.strip().splitlines()[-1].startswith("error:") and "bad.safetensors" in outcome.output


def test_eval_prints_the_ceilings(trained):
    outcome = CliRunner().invoke(main, ["eval", str(trained), "--device", "cpu", "--metrics", "coherence", "--joint-samples", "10"])
    assert outcome.exit_code == 0, outcome.output
    assert "judge's ceiling" in outcome.output and "ceiling/image/label" in outcome.output
    written = json.loads((trained / "eval.json").read_text())
    assert written["coherence"]["joint_samples"] == 10


def test_posterior_draws_are_the_posterior_and_each_subset_has_its_own_stream():
    """Draws from a Gaussian and from a two-component mixture have the right moments and component shares, and
    changing one subset's posterior leaves every other subset's draws unchanged."""
    from modkit.core.distributions import UniformMixture
    from modkit.core.gaussian import DiagGaussian
    from modkit.evaluation.metrics.coherence import posterior_draw

    S, B, D = 3, 20000, 2
    mu = torch.tensor([0.0, 2.0, -1.0])[:, None, None].expand(S, B, D).clone()
    logvar = torch.log(torch.tensor([1.0, 0.25, 4.0]))[:, None, None].expand(S, B, D).clone()
    z = posterior_draw(DiagGaussian(mu, logvar), ["a", "b", "c"], 0, 0, 0)
    assert z.mean((1, 2)).tolist() == pytest.approx([0.0, 2.0, -1.0], abs=0.05)
    assert z.std((1, 2)).tolist() == pytest.approx([1.0, 0.5, 2.0], rel=0.03)
    moved = mu.clone()
    moved[0] += 10
    again = posterior_draw(DiagGaussian(moved, logvar), ["a", "b", "c"], 0, 0, 0)
    assert torch.equal(again[1:], z[1:]) and not torch.equal(again[0], z[0])

    # a mixture over two components (M, S, B, D): at ±5, the second left out for subset 0
    comp_mu = torch.stack([torch.full((S, B, D), 5.0), torch.full((S, B, D), -5.0)])
    valid = torch.ones(2, S, B, dtype=torch.bool)
    valid[1, 0] = False
    mixture = UniformMixture(DiagGaussian(comp_mu, torch.full_like(comp_mu, -4.0)), valid)
    z = posterior_draw(mixture, ["a", "b", "c"], 0, 0, 0)
    assert (z[0, :, 0] > 0).float().mean().item() == 1.0
    assert (z[1, :, 0] > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    valid2 = valid.clone()
    valid2[1, 2] = False
    other = posterior_draw(UniformMixture(DiagGaussian(comp_mu, torch.full_like(comp_mu, -4.0)), valid2), ["a", "b", "c"], 0, 0, 0)
    assert torch.equal(other[:2], z[:2]) and (other[2, :, 0] > 0).all()
