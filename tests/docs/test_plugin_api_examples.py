"""docs/plugin-api.md's three worked examples (docs/examples/*.py), as an author would use them.

Each file is imported as a plugin module named in a recipe's ``plugins:``, checked with modkit.testing, and
trained for a few epochs; the fusion is also evaluated with ``modkit eval``. The code blocks of the page that
quote an example file must match it, and the examples import nothing but ``modkit``'s public API.
"""
from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import modkit
import modkit.distributions
from modkit.cli.main import main
from modkit.testing import FUSION_CHECKS, MODALITY_CHECKS, check_fusion, fusion_cases, modality_cases, train_recipe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
PAGE = ROOT / "docs" / "plugin-api.md"


@pytest.fixture(autouse=True)
def examples_on_the_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.fixture
def waves_recipe():
    return {
        "name": "signal-doc",
        "plugins": ["signal_modality"],
        "data": {"dataset": {"type": "sine_waves", "n": 800, "length": 32}, "batch_size": 50},
        "modalities": {"wave": {"type": "signal", "length": 32, "channels": 8, "hidden": 64},
                       "label": {"type": "label", "num_classes": 4, "embedding_dim": 8, "hidden": [64], "weight": 8}},
        "model": {"latent_dim": 4, "fusion": "poe", "sampler": "all", "beta": {"start": 0.0, "end": 1.0, "anneal_epochs": 15}},
        "train": {"epochs": 15, "lr": 3.0e-3},
    }


def losses(run) -> list[float]:
    values = [row["train/loss"] for row in run.rows]
    assert all(math.isfinite(v) for v in values), values
    return values


@pytest.mark.parametrize("check", MODALITY_CHECKS, ids=lambda c: c.__name__)
def test_signal_modality_passes_the_contract(check):
    [case] = modality_cases(["signal_modality"], ["signal"])
    check(case)


@pytest.mark.slow
def test_signal_modality_trains_and_reads_given_files(tmp_path, waves_recipe):
    run = train_recipe(waves_recipe, tmp_path / "run")
    values = losses(run)
    assert values[-1] < values[0], values
    batch = run.test_batch()
    with torch.no_grad():
        predicted = run.model.predict(run.model.posterior(batch, ["wave"]).mean[0], ["label"])["label"]
    assert float((predicted == batch.data["label"]).float().mean()) > 0.6  # the frequency, read from the wave; chance 0.25
    signal = run.model.modalities["wave"]
    np.save(tmp_path / "w.npy", np.arange(32, dtype=np.float32))
    (tmp_path / "w.csv").write_text(",".join(str(i) for i in range(32)))
    for given in (str(tmp_path / "w.npy"), str(tmp_path / "w.csv"), " ".join(str(i) for i in range(32))):
        assert signal.preprocess(signal.load_given(given)).tolist() == list(range(32))
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "run"), "--trust-plugins", "--given", f"wave={tmp_path / 'w.npy'}",
                                       "--target", "label", "-n", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_gated_fusion_passes_the_contract():
    [case] = fusion_cases(["gated_fusion"], ["gated_moe"])
    assert len(FUSION_CHECKS) >= 5
    check_fusion(case)


def test_gated_fusion_posterior_is_the_gate_weighted_mixture():
    """Against a direct computation: weights = softmax of the gate scores over the present experts."""
    from gated_fusion import GatedMixture

    from modkit.testing import toy_batch, toy_model

    model = toy_model(GatedMixture, {"type": "gated_moe"}).eval()
    batch = toy_batch()
    with torch.no_grad():
        experts = model.encode(batch)
        post = model.posterior(batch, torch.ones(1, 3, dtype=torch.bool))
        scores = experts.extra["scores"].T  # (B, N)
        expected = torch.softmax(torch.where(batch.present, scores, float("-inf")), -1)
        assert torch.allclose(post.weights[:3, 0].T, expected, atol=1e-6)
        mean = (expected.T.unsqueeze(-1) * experts.mu).sum(0)
        assert torch.allclose(post.mean[0], mean, atol=1e-5)


@pytest.mark.slow
def test_gated_fusion_trains_and_evaluates(tmp_path):
    run_dir = tmp_path / "gated"
    run = train_recipe({
        "name": "gated-doc",
        "plugins": ["gated_fusion"],
        "data": {"dataset": "digits", "batch_size": 64},
        "modalities": {"image": {"type": "image", "shape": [1, 8, 8], "hidden": [64]},
                       "label": {"type": "label", "num_classes": 10, "embedding_dim": 16, "hidden": [64], "weight": 4}},
        "model": {"latent_dim": 8, "fusion": {"type": "gated_moe"}, "sampler": "full"},
        "train": {"epochs": 3, "lr": 3.0e-3},
    }, run_dir)
    values = losses(run)
    assert values[-1] < values[0], values
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--trust-plugins", "--metrics", "likelihood,coherence", "--iw-samples", "10",
                                       "--prior-samples", "20", "--iw-items", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads((run_dir / "eval.json").read_text())
    assert math.isfinite(data["likelihood"]["log p(image)"]["mean"]) and data["coherence"]["cross"]


@pytest.mark.slow
def test_digits_parity_extends_digits_and_trains(tmp_path):
    from digits_parity import DigitsParity

    records = DigitsParity(DigitsParity.Config(type="digits_parity", blur=0.5), Path("data")).load()["all"]
    row = records.get(10)
    assert int(row["parity"]) == int(row["label"]) % 2 and "caption" in row
    assert {"parity", "ink", "image"} <= set(records.arrays)  # still in memory: batches are one index operation
    run = train_recipe({
        "name": "parity-doc",
        "plugins": ["digits_parity"],
        "data": {"dataset": {"type": "digits_parity", "base": {"language": "fr"}}, "batch_size": 64},
        "modalities": {"image": {"type": "image", "shape": [1, 8, 8], "hidden": [32]},
                       "parity": {"type": "label", "num_classes": 2, "embedding_dim": 4, "hidden": [16]}},
        "model": {"latent_dim": 4, "fusion": "poe", "sampler": "all"},
        "train": {"epochs": 2, "lr": 3.0e-3},
    }, tmp_path / "run")
    assert len(losses(run)) == 2 and set(run.test_batch().data) == {"image", "parity"}


def test_examples_import_only_the_public_api():
    public = {"modkit": set(modkit.__all__), "modkit.distributions": set(modkit.distributions.__all__)}
    for path in EXAMPLES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "modkit":
                assert node.module in public, f"{path.name} imports {node.module}: use modkit or modkit.distributions"
                names = {a.name for a in node.names}
                assert names <= public[node.module], (path.name, node.module, names - public[node.module])


def test_the_page_quotes_the_examples_as_they_are():
    """A ```python block whose first line is `# docs/examples/NAME.py` must appear in that file line for line."""
    quoted = re.findall(r"```python\n# (docs/examples/\w+\.py)[^\n]*\n(.*?)```", PAGE.read_text(), re.S)
    assert {name for name, _ in quoted} == {f"docs/examples/{p.name}" for p in EXAMPLES.glob("*.py")}
    for name, block in quoted:
        text = (ROOT / name).read_text()
        for chunk in re.split(r"\n\s*# …\n", block.strip("\n")):
            assert chunk in text, (name, chunk[:300])
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S):
        for line in block.splitlines():
            # modkit.testing (a module of its own, so that `import modkit` needs no pytest) and modkit.distributions are public too
            internal = re.match(r"\s*from modkit\.(?!(?:testing|distributions)\b)\w", line)
            assert not internal, f"the page imports an internal module: {line}"
