"""docs/python-api.md's examples run as written (one epoch of recipes/digits.yaml), and the export they
make loads without the data or the source run."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import modkit

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python-api.md"


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_api_is_public():
    assert {"train", "load", "load_weights", "Run"} <= set(modkit.__all__)
    assert all(callable(getattr(modkit, name)) for name in ("train", "load", "load_weights"))


@pytest.mark.slow
def test_the_documented_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    blocks = doc_blocks()
    assert len(blocks) == 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own code
    run, images, captions, prior = namespace["run"], namespace["images"], namespace["captions"], namespace["prior"]
    assert run.run_dir == Path("runs/digits-api") and (run.run_dir / "checkpoint.safetensors").is_file()
    assert len(images) == 4 and all(isinstance(i, np.ndarray) and i.shape == (8, 8, 3) for i in images)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert set(prior) == set(run.model.names) and all(len(v) == 3 for v in prior.values())
    assert namespace["posterior"].mean.shape == (1, run.recipe.model.latent_dim)
    n_test = len(namespace["test"])
    assert namespace["z"].shape == namespace["z_images"].shape == (n_test, run.recipe.model.latent_dim)
    assert namespace["digits"].shape == (n_test,) and namespace["back"].mean.shape == (4, run.recipe.model.latent_dim)
    assert 0 <= namespace["result"]["summary"]["coherence/image->label/label"] <= 1
    exported = Path("exported/digits")
    assert sorted(p.name for p in exported.iterdir()) == ["model.safetensors", "recipe.yaml", "tokenizers"]

    # the export is self-contained: no source run, no data (the dataset would fail if it were read)
    shutil.rmtree("runs")
    import modkit.training.builder as builder

    def no_data(*_a, **_k):
        raise AssertionError("an exported model read the dataset")

    monkeypatch.setattr(builder, "load_records", no_data)
    again = modkit.load(exported, "cpu")
    for key, value in namespace["run"].model.state_dict().items():
        assert (again.model.state_dict()[key].cpu() == value.cpu()).all(), key
    assert isinstance(again.generate(given={"label": "three"}, target="caption", n=1)[0], str)
    with pytest.raises(modkit.ModkitError, match="exported model"):
        again.evaluate()
    # the command line reads an export too: generate and sample work, eval says why it cannot
    from run_helpers import cli, one_error_line

    assert cli("sample", exported, "-n", "2", "--device", "cpu", "--out", "prior.png").exit_code == 0
    assert Path("prior.png").is_file() and not (exported / "generated").exists()
    assert "is an exported model" in one_error_line(cli("eval", exported, "--device", "cpu"))


def test_train_from_a_dict_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from run_helpers import tiny_raw

    run = modkit.train(tiny_raw(), overrides=["train.epochs=1"], out="a", echo=lambda s: None)
    assert run.recipe.train.epochs == 1 and (tmp_path / "a" / "recipe.yaml").is_file()
    resumed = modkit.train(resume="a", overrides={"train.epochs": 2}, echo=lambda s: None)
    assert yaml.safe_load((tmp_path / "a" / "recipe.yaml").read_text())["train"]["epochs"] == 1  # the run's recipe stays
    assert len((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) == 2 and resumed.checkpoint_epoch == 2
    with pytest.raises(modkit.ModkitError, match="holds a run"):
        modkit.train(tiny_raw(), out="a")
    assert set(modkit.load_weights("a")) == set(run.model.state_dict())


# -- the notebook's API: threads, many items, the run's data, Python's words ---------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from run_helpers import tiny_raw

    base = tmp_path_factory.mktemp("api")
    return modkit.train(tiny_raw(), out=base / "run", echo=lambda s: None)


def test_load_applies_the_thread_policy_and_says_so(tiny_run, monkeypatch, caplog):
    import logging

    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: setattr(test_load_applies_the_thread_policy_and_says_so, "set", n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: getattr(test_load_applies_the_thread_policy_and_says_so, "set", 4))
    with caplog.at_level(logging.INFO, logger="modkit"):
        run = modkit.load(tiny_run.run_dir, "cpu")
    # the tiny model's largest operator is far below SPLIT_WORTH: one thread, as training chose
    assert run.threads == 1 and test_load_applies_the_thread_policy_and_says_so.set == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "modkit"]
    assert lines == ["modkit.load: torch uses 1 CPU thread (train.threads=auto)"]
    assert before >= 1


def test_load_leaves_a_count_the_environment_chose(tiny_run, monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = modkit.load(tiny_run.run_dir, "cpu")
    assert run.threads == torch.get_num_threads()


def test_repr_is_one_short_line(tiny_run):
    text = repr(tiny_run)
    assert "\n" not in text and len(text) < 200 and "'tiny'" in text and "image, label" in text and "epoch 1" in text


def test_encode_takes_one_item_or_a_batch_in_every_shape_the_api_returns(tiny_run):
    run = tiny_run
    d = run.recipe.model.latent_dim
    images = run.data("test").values("image")[:8]  # (8, 1, 8, 8), as the dataset gives them
    one = run.encode({"image": images[0]})
    assert one.mean.shape == one.logvar.shape == (1, d)
    batch = run.encode({"image": images})
    assert batch.mean.shape == (8, d)
    # a batch is the same computation as its items one at a time (independent of the batch path)
    each = np.concatenate([run.encode({"image": x}).mean.numpy() for x in images])
    np.testing.assert_allclose(batch.mean.numpy(), each, rtol=1e-5, atol=1e-6)
    assert run.encode({"image": list(images)}).mean.shape == (8, d)
    assert run.encode({"image": images.reshape(8, 64)}).mean.shape == (8, d)  # flat items
    assert run.encode({"label": ["three", 4, "five"]}).mean.shape == (3, d)
    assert run.encode({"label": np.array([1, 2])}).mean.shape == (2, d)


def test_generate_then_encode_round_trips(tiny_run):
    """An image ``generate`` returned ((8, 8, 3), grey in RGB) is read back as the (1, 8, 8) image it shows."""
    run = tiny_run
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    renders = run.generate(given={"label": "seven"}, target="image", n=3, mean=True)
    assert all(r.shape == (8, 8, 3) for r in renders)
    grey = np.stack([r[..., 0] for r in renders])[:, None]  # what the render shows, in the recipe's shape
    from_renders = run.encode({"image": renders}).mean.numpy()
    np.testing.assert_allclose(from_renders, run.encode({"image": grey}).mean.numpy(), atol=1e-5)
    assert run.encode({"image": renders[0]}).mean.shape == (1, run.recipe.model.latent_dim)
    assert run.encode({"image": np.stack(renders)}).mean.shape == (3, run.recipe.model.latent_dim)


def test_embed_a_split_or_many_values(tiny_run):
    run = tiny_run
    test = run.data("test")
    d = run.recipe.model.latent_dim
    z = run.embed("test", batch_size=50)
    assert z.shape == (len(test), d) and z.dtype == np.float32
    # the joint posterior of each item, computed independently through encode, one item at a time
    images, labels = test.values("image"), test.values("label")
    for i in (0, 17, len(test) - 1):
        expected = run.encode({"image": images[i], "label": int(labels[i])}).mean.numpy()[0]
        np.testing.assert_allclose(z[i], expected, rtol=1e-5, atol=1e-6)
    only_images = run.embed({"image": images}, batch_size=64)
    np.testing.assert_allclose(only_images, run.embed("test", subset=["image"]), atol=1e-6)
    mean, logvar = run.embed({"label": labels[:10]}, logvar=True)
    assert mean.shape == logvar.shape == (10, d) and np.isfinite(logvar).all()
    assert len(run.data("train")) + len(test) == 1797 and set(test.rows) & set(run.data("train").rows) == set()


def test_embed_encodes_once_per_batch(tiny_run, monkeypatch):
    calls = []
    encode = tiny_run.model.encode
    monkeypatch.setattr(tiny_run.model, "encode", lambda batch: calls.append(len(batch)) or encode(batch))
    tiny_run.embed("test", batch_size=100)
    assert calls == [100, 100, 100, len(tiny_run.data("test")) - 300]


@pytest.mark.parametrize("call, message", [
    (lambda r: r.encode({"image": np.zeros((3, 5))}), r"^given\['image'\]: image has shape \(3, 5\)"),
    (lambda r: r.encode({"label": "eleven"}), r"^given\['label'\]: label 'eleven' is not a class id"),
    (lambda r: r.encode({"nose": 1}), r"^given: unknown modality 'nose'"),
    (lambda r: r.encode({"image": np.zeros((3, 64)), "label": [1, 2]}), r"^given: the modalities hold different numbers"),
    (lambda r: r.generate(given={"label": 3}, target="sound"), r"^target: unknown modality 'sound'"),
    (lambda r: r.generate(given={"label": 3}, target="image", n=0), r"^n must be at least 1"),
    (lambda r: r.sample(0), r"^n must be at least 1"),
    (lambda r: r.embed("validation"), r"^split must be 'train' or 'test'"),
    (lambda r: r.embed("test", subset=["sound"]), r"^subset: unknown modality 'sound'"),
    (lambda r: r.data("test").values("sound"), r"^values: unknown modality 'sound'"),
])
def test_errors_from_python_speak_python(tiny_run, call, message):
    with pytest.raises(modkit.ModkitError, match=message) as info:
        call(tiny_run)
    assert "--" not in str(info.value) and "\n" not in str(info.value)


def test_export_speaks_of_export_and_leaves_no_machine_path(tiny_run, tmp_path):
    recipe = yaml.safe_load((tiny_run.run_dir / "recipe.yaml").read_text())
    assert Path(recipe["data"]["root"]).is_absolute()  # the resolved recipe records the project's data folder
    dest = tiny_run.export(tmp_path / "model")
    exported = yaml.safe_load((dest / "recipe.yaml").read_text())
    assert "root" not in exported["data"] and exported["modalities"] == recipe["modalities"]
    with pytest.raises(modkit.ModkitError, match=r"holds an exported model; export into a new or empty folder") as info:
        tiny_run.export(dest)
    assert "--resume" not in str(info.value) and "--out" not in str(info.value)
    again = modkit.load(dest, "cpu")
    assert again.threads >= 1 and "exported model" in repr(again)
    with pytest.raises(modkit.ModkitError, match="exported model: it has no data"):
        again.data("test")
    np.testing.assert_allclose(again.embed({"label": [1, 2]}), tiny_run.embed({"label": [1, 2]}), atol=1e-6)


def test_lifecycle_mistakes_from_python_name_the_keyword_arguments(tmp_path):
    """The same mistakes as on the command line, worded for the caller's keyword arguments (no ``--out``)."""
    from tiny_recipes import tiny_recipe_dict

    import modkit
    from modkit.errors import ModkitError

    out = tmp_path / "used"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ModkitError) as caught:
        modkit.train(tiny_recipe_dict(), out=out, echo=lambda *a: None)
    assert "--" not in str(caught.value) and "out=" in str(caught.value), caught.value
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(ModkitError) as caught:
        modkit.train(echo=lambda *a: None)
    assert "--" not in str(caught.value) and "recipe" in str(caught.value), caught.value


@pytest.mark.parametrize("fusion", ["moe", "mopoe"])
def test_embed_and_encode_cut_a_mixture_posterior_to_its_one_subset(tmp_path, fusion):
    """A mixture posterior (MoE, MoPoE) has its subset axis after the component axis: embed's means are the
    mixture means of the one conditioning subset, item for item, as the model computes them."""
    import torch
    from tiny_recipes import tiny_recipe_dict

    import modkit

    run = modkit.train(tiny_recipe_dict(f"model.fusion={fusion}", "model.sampler=all", "train.epochs=1"), out=tmp_path / fusion,
                       echo=lambda *a: None)
    means = run.embed("test", batch_size=7)
    batch = next(iter(run.data("test").batches(10_000)))
    with torch.no_grad():
        direct = run.model.posterior(batch, run.model.subset_mask(run.model.names)).mean[0]
    assert means.shape == (len(run.data("test")), run.recipe.model.latent_dim)
    assert torch.allclose(torch.as_tensor(means), direct.float(), atol=1e-5)
    one = run.encode({"label": [3, 4]})
    assert tuple(one.mean.shape) == (2, run.recipe.model.latent_dim)
    with pytest.raises(modkit.ModkitError, match="logvar=True needs a Gaussian posterior"):
        run.embed("test", logvar=True)
