"""JNF and JNF-DCCA end to end: ``modkit train`` in the fusion's own stages (each logged, each freezing what it
should), ``modkit eval`` (sampled coherence and importance-sampled likelihoods from the flow posteriors),
``modkit generate``, and a model exported and loaded again that generates as the run does."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import modkit
from modkit.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "model.latent_dim=4", "train.device=cpu",
         "train.progress=false", "model.fusion.hidden=[32]", "model.fusion.unimodal_hidden=[16]", "model.fusion.hidden_size=16",
         "eval.samples=2"]
STAGES = {"jnf": (["train.epochs=3", "model.fusion.warmup=2"], ["joint", "joint", "unimodal"]),
          "jnf_dcca": (["train.epochs=3", "model.fusion.warmup=1", "model.fusion.nb_epochs_dcca=1", "model.fusion.dcca_hidden=[16]",
                        "model.fusion.embedding_dcca_dim=4"], ["joint", "dcca", "unimodal"])}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow  # about 10 s each: three epochs of the digits, an evaluation with likelihoods, a generation
@pytest.mark.parametrize("fusion", list(STAGES))
def test_train_eval_generate_export(fusion, tmp_path):
    sets, stages = STAGES[fusion]
    run = tmp_path / "run"
    args = [a for s in [*SMALL, *sets] for a in ("--set", s)]
    result = cli("train", ROOT / "recipes" / f"digits-{fusion}.yaml", *args, "--out", run)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "train/loss" in r]
    assert [r["stage"] for r in epochs] == stages, epochs
    assert all(math.isfinite(r["train/loss"]) for r in epochs)
    assert "train/unimodal_nll" in epochs[-1] and "train/rec/image" in epochs[0]

    loaded = modkit.load(run, "cpu")
    with torch.no_grad():  # the joint parts did not move in the last stage: the checkpoint's decoders are the joint stage's
        post = loaded.encode({"label": 3})
        assert post.mean.shape == (1, 4) and torch.isfinite(post.log_prob(post.rsample(5))).all()

    result = cli("eval", run, "--metrics", "coherence,likelihood", "--max-items", "40", "--iw-items", "8", "--device", "cpu")
    assert result.exit_code == 0, result.output
    scores = json.dumps(json.loads((run / "eval.json").read_text()))
    assert "coherence/label->image" in scores and "coherence/image->label" in scores, scores[:2000]
    assert "NaN" not in scores and "Infinity" not in scores  # JSON's spelling of non-finite numbers

    result = cli("generate", run, "--target", "image", "--given", "label=3", "-n", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output

    exported = loaded.export(tmp_path / "exported")
    again = modkit.load(exported, "cpu")
    torch.manual_seed(0)
    a = loaded.generate({"label": 3}, target="image", n=2, mean=True)
    torch.manual_seed(0)
    b = again.generate({"label": 3}, target="image", n=2, mean=True)
    assert all((torch.as_tensor(x) == torch.as_tensor(y)).all() for x, y in zip(a, b))


@pytest.mark.slow  # about 10 s each: three epochs of a 96-item stand-in, five conv modalities
@pytest.mark.parametrize("fusion", list(STAGES))
def test_polymnist_recipe_small_tier_on_the_stand_in(fusion, tmp_path):
    """The PolyMNIST recipe at the small tier its header gives, one epoch per stage, on the offline stand-in."""
    from modkit_polymnist import make_polymnist

    recipe = ROOT / "recipes" / f"polymnist-{fusion}.yaml"
    header = recipe.read_text()
    assert "Needs on disk" in header and "Small tier" in header
    make_polymnist(tmp_path / "standin", n_train=96, n_test=32)
    line = next(line for line in header.splitlines() if line.startswith(f"#   modkit train recipes/polymnist-{fusion}.yaml"))
    sets = [s.replace("data/standin", str(tmp_path / "standin")) for s in line.split("--set ")[1:]]
    run = tmp_path / "run"
    result = cli("train", recipe, *[a for s in sets for a in ("--set", s.strip())], "--set", "train.device=cpu",
                 "--set", "train.progress=false", "--out", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3 and math.isfinite(summary["test/elbo"])
    stages = [json.loads(line).get("stage") for line in (run / "metrics.jsonl").read_text().splitlines() if "train/loss" in line]
    assert stages == {"jnf": ["joint", "unimodal", "unimodal"], "jnf_dcca": ["joint", "dcca", "unimodal"]}[fusion]
