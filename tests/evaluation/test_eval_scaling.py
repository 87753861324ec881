"""Evaluation that scales to many modalities on a CPU: the default path computes fewer subsets and likelihoods, and what it
computes equals the full path's numbers (each likelihood estimate draws from its own seeded stream)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.errors import ModkitError
from modkit.evaluation.likelihood import quantities
from modkit.evaluation.suite import EvalSettings, eval_subsets, evaluate_run, fast_balanced_accuracy
from modkit.core.subsets import subset_names
from modkit.runs.loading import load_run

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--set", "train.epochs=1", "--set", "model.latent_dim=8", "--set", "train.progress=false", "--set", "train.device=cpu",
         "--set", "eval.samples=2", "--set", "eval.coherence=false"] + [
    a for m in ("image", "label", "attributes") for a in ("--set", f"modalities.{m}.hidden=[16]")]
FAST = dict(iw_samples=30, prior_samples=30, joint_samples=64, iw_items=40, max_items=96, judge_rows=300, probe_rows=300,
            batch_size=128, retrain_judges=True)


def same(a, b, rel=1e-5, path="") -> None:
    """Nested dicts/lists of numbers equal to rounding."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            same(a[key], b[key], rel, f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, rel, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-6), path
    else:
        assert a == b, path


def test_default_subsets_grow_with_n_and_keep_the_full_order():
    names = ["a", "b", "c", "d", "e"]
    default = subset_names(eval_subsets(names), names)
    assert default == [s for s in subset_names(eval_subsets(names, "all"), names) if s in default]  # all_subsets' order
    assert len(default) == 2 * 5 + 1 and "a+b+c+d+e" in default and "b+c+d+e" in default and "a" in default
    assert len(eval_subsets(names[:3])) == 7  # every subset while there are no more than 2N + 1
    assert subset_names(eval_subsets(names, "c+a, b"), names) == ["b", "a+c"]
    with pytest.raises(ModkitError, match="'f' in 'a\\+f' is not a modality"):
        eval_subsets(names, "a+f")
    assert [q[0] for q in quantities(names[:3], "default")] == ["log p(a)", "log p(b)", "log p(c)", "log p(a,b,c)"]
    assert len(quantities(names, "all")) == 5 + 10 + 1 + 20


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scaling") / "digits"
    result = CliRunner().invoke(main, ["train", str(REPO / "recipes" / "digits.yaml"), *SMALL, "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_default_path_equals_the_full_path_on_what_it_computes(digits_run):
    run = load_run(digits_run, "cpu")
    names = run.model.names
    assert len(names) == 5
    full = evaluate_run(run, EvalSettings(subsets="all", likelihoods="all", **FAST))
    default = evaluate_run(run, EvalSettings(**FAST))

    judged = len(full["coherence"]["cross"]) // 31  # targets with a coherence judge
    assert judged >= 2 and len(default["coherence"]["cross"]) == 11 * judged
    for group in ("reconstruction", "probe"):
        assert set(default[group]) < set(full[group])
        same(default[group], {key: full[group][key] for key in default[group]}, path=group)
    cross = default["coherence"]["cross"]
    same(cross, {key: full["coherence"]["cross"][key] for key in cross}, path="coherence")
    same(default["coherence"]["joint"], full["coherence"]["joint"], path="joint coherence")
    same(default["relatedness"], full["relatedness"], path="relatedness")

    lik, lik_full = default["likelihood"], full["likelihood"]
    assert set(lik) == {f"log p({n})" for n in names} | {f"log p({','.join(names)})"}
    assert len(lik_full) == 5 + 10 + 1 + 20 and set(lik) < set(lik_full)
    for key, cell in lik.items():
        assert cell["items"] == 40
        assert cell["mean"] == pytest.approx(lik_full[key]["mean"], rel=1e-6), key
        assert cell["log_w_var"] == pytest.approx(lik_full[key]["log_w_var"], rel=1e-5), key
    # the headline numbers sweep plots are all there
    per_subset = ("coherence/given_", "likelihood/log p(", "log_w_var/log p(")  # and ".../given": one per subset asked
    assert {k for k in default["summary"] if not k.startswith(per_subset) and not k.endswith("/given")} == \
           {k for k in full["summary"] if not k.startswith(per_subset) and not k.endswith("/given")}


def test_eval_cli_prints_an_estimate_and_rejects_unknown_subsets(digits_run):
    args = ["eval", str(digits_run), "--device", "cpu", "--metrics", "reconstruction", "--max-items", "32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "11 of 31 subsets (--subsets all for every one)" in result.output and "estimated decoding ≈" in result.output
    bad = CliRunner().invoke(main, [*args, "--subsets", "image+nose"])
    assert bad.exit_code != 0 and "error: --subsets: 'nose' in 'image+nose' is not a modality" in bad.output
    assert torch.get_num_threads() >= 1


def test_fast_balanced_accuracy_equals_sklearn():
    from modkit.evaluation.judges import balanced_accuracy  # sklearn's, with its validation

    rng = np.random.default_rng(0)
    for n, classes in ((1, 2), (7, 3), (200, 5), (500, 2)):
        y = rng.integers(classes, size=n)
        pred = np.where(rng.random(n) < 0.6, y, rng.integers(classes + 1, size=n))  # some predictions of an unseen class
        assert fast_balanced_accuracy(y, pred) == pytest.approx(balanced_accuracy(y, pred), abs=1e-12)
    assert fast_balanced_accuracy(np.array([], dtype=int), np.array([], dtype=int)) is None


def test_iw_items_zero_means_every_test_item():
    from modkit.cli.run_commands import settings_from

    assert settings_from({"iw_items": 0}).iw_items is None
    assert settings_from({"iw_items": 5}).iw_items == 5
    assert EvalSettings().iw_items == 32 and EvalSettings().subsets == "default" and EvalSettings().likelihoods == "default"
