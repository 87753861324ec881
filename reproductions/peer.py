"""The peer arm: an independent library's model trained on the very rows a modkit arm trains on.

An arm of kind ``multivae`` names a modkit arm's recipe and settings (the same ``recipe`` and ``sets`` as the
modkit arm beside it) and a MultiVae 1.0.3 model (``peer``: ``MVAE`` or ``MoPoE``). For each x and seed it

1. builds the modkit arm's data exactly as modkit's trainer does (:func:`modkit.training.builder.build` on the
   recipe with the arm's settings and the x): the same split, the same paired rows, the unpaired rows handled by
   the recipe's ``data.unpaired`` (MVAE's protocol: one row per modality alone), the same test rows;
2. hands those rows and the recipe's networks and budget (MLP sizes, latent size, epochs, batch size, learning
   rate and optimiser, β schedule, λ per modality, seed) to ``peer_worker.py``, run by the python of MultiVae's
   own venv in a subprocess — MultiVae is never imported into modkit's process and is no dependency of modkit;
3. scores the test predictions the worker returns here, as modkit scores its own (``balanced_accuracy/image->label``:
   the label decoded from the mean of q(z | image), balanced over the classes present in the test rows).

Each seed's result is a ``result.json`` under ``OUT/peer/<model>-<hash>/x-<x>/seed-<s>/``: a finished seed is
never trained again. Without MultiVae's venv the arm is reported as not run, with the reason.

The venv: ``$MODKIT_MULTIVAE_PYTHON`` if set, else ``benchmarks/.venv-multivae/bin/python`` of the checkout
(``benchmarks/run.py`` creates it).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

from modkit.errors import ModkitError
from reproductions.claim_spec import Arm, Claim, find_recipe, project_root

KIND = "multivae"
MODELS = ("MVAE", "MoPoE")
PYTHON_ENV = "MODKIT_MULTIVAE_PYTHON"
WORKER = Path(__file__).resolve().parent / "peer_worker.py"
RESULT = "result.json"
#: the one metric the worker's predictions give
METRIC = "balanced_accuracy/image->label"
#: bump when the worker's training changes meaning: results of another version are trained again
VERSION = 1


def peer_python() -> tuple[Path | None, str | None]:
    """The python of MultiVae's venv, or why there is none (one line)."""
    named = os.environ.get(PYTHON_ENV)
    python = Path(named) if named else project_root() / "benchmarks" / ".venv-multivae" / "bin" / "python"
    if not python.exists():
        return None, (f"no MultiVae venv: {PYTHON_ENV} names {python}, which does not exist" if named else
                      "no MultiVae venv at benchmarks/.venv-multivae (benchmarks/run.py creates it) and "
                      f"{PYTHON_ENV} is not set")
    probe = subprocess.run([str(python), "-c", "import multivae, torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"MultiVae does not import in {python}: {last}"
    return python, None


def arm_sets(claim: Claim, arm: Arm, quick: bool, x: float | None) -> list[str]:
    """The settings the modkit arm's run at ``x`` is built with (reproduce.arm_sets plus the swept key)."""
    return [*arm.sets, *(claim.quick_sets if quick else ()), *([f"{claim.x_key}={x}"] if claim.x_key and x is not None else [])]


def peer_folder(claim: Claim, arm: Arm, quick: bool, out: Path) -> Path:
    """Where the arm's seeds go: keyed by the recipe, settings and model (the x and seed are folders below)."""
    spec = [arm.recipe, [*arm.sets, *(claim.quick_sets if quick else ())], arm.peer, claim.x_key, VERSION]
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return out / "peer" / f"{arm.peer.lower()}-{Path(arm.recipe).stem}-{digest}"


def setup_for(claim: Claim, arm: Arm, quick: bool, x: float | None):
    """The modkit arm's recipe and built setup at ``x``: the rows its trainer would see."""
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    recipe = load_recipe(find_recipe(arm.recipe), arm_sets(claim, arm, quick, x))[0]
    return recipe, build(recipe, load_plugins())


def rows_of(setup) -> dict[str, Any]:
    """The training rows (image, label as class ids, presence) and the test rows, as plain tensors."""
    names = list(setup.train.modalities)
    if sorted(names) != ["image", "label"]:
        raise ModkitError(f"the MultiVae peer arm trains an image + label model; this recipe has {', '.join(names)}")
    train = setup.train.__getitems__(list(range(len(setup.train))))
    test = setup.test.__getitems__(list(range(len(setup.test))))
    order = [names.index("image"), names.index("label")]
    return {"train_image": train.data["image"].float(), "train_label": train.data["label"].reshape(-1).long(),
            "train_present": train.present[:, order].bool(),
            "test_image": test.data["image"].float(), "test_label": test.data["label"].reshape(-1).long()}


def worker_config(recipe, setup, arm: Arm, seed: int) -> dict[str, Any]:
    """The recipe's networks (as its modalities were built, defaults filled in) and budget as the worker takes
    them; a setting the peer cannot mirror is one line."""
    image, label = setup.model.modalities["image"].config, setup.model.modalities["label"].config
    if getattr(image, "architecture", "mlp") != "mlp" or getattr(image, "backbone", None) is not None:
        raise ModkitError(f"the MultiVae peer arm mirrors MLP image networks; {arm.recipe} uses another")
    if image.likelihood != "bernoulli":
        raise ModkitError(f"the MultiVae peer arm mirrors a Bernoulli image likelihood; {arm.recipe} has {image.likelihood}")
    if recipe.train.scheduler is not None:
        raise ModkitError(f"the MultiVae peer arm mirrors a constant learning rate; {arm.recipe} has a scheduler")
    beta = recipe.model.beta
    return {"model": arm.peer, "seed": seed, "latent_dim": recipe.model.latent_dim,
            "image_shape": list(image.shape), "image_hidden": list(image.hidden),
            "num_classes": label.num_classes, "label_embedding": label.embedding_dim, "label_hidden": list(label.hidden),
            "weights": {"image": image.weight, "label": label.weight},
            "beta": {"start": beta.start, "end": beta.end, "anneal_epochs": beta.anneal_epochs},
            "epochs": recipe.train.epochs, "lr": recipe.train.lr, "batch_size": recipe.data.batch_size,
            "optimizer": recipe.train.optimizer, "weight_decay": recipe.train.weight_decay, "amsgrad": recipe.train.amsgrad,
            "grad_clip": recipe.train.grad_clip, "threads": 1}


def score(predictions: list[int], truth) -> dict[str, float | None]:
    """modkit's image → label number from the worker's predictions: mean recall over the classes in the test rows."""
    import numpy as np

    from modkit.evaluation.judges import balanced_accuracy

    return {METRIC: balanced_accuracy(np.asarray(truth), np.asarray(predictions))}


def train_seed(python: Path, claim: Claim, arm: Arm, quick: bool, x: float | None, seed: int, folder: Path,
               timeout: float | None = None) -> dict[str, Any]:
    """One seed at one x: the rows, the worker, the score; written to ``folder/result.json`` and returned."""
    import torch

    from modkit.storage import files as rundir

    recipe, setup = setup_for(claim, arm, quick, x)
    rows = rows_of(setup)
    config = worker_config(recipe, setup, arm, seed)
    folder.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now()  # local time, as the sweep's trials record theirs
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        rows_path, config_path, out_path = Path(tmp) / "rows.pt", Path(tmp) / "config.json", Path(tmp) / "out.json"
        torch.save(rows, rows_path)
        config_path.write_text(json.dumps(config))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("PYTHONPATH", None)  # the worker sees MultiVae's venv alone, not modkit's checkout
        done = subprocess.run([str(python), str(WORKER), str(rows_path), str(config_path), str(out_path)],
                              capture_output=True, text=True, env=env, timeout=timeout)
        if done.returncode != 0 or not out_path.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModkitError(f"{claim.id}: MultiVae arm '{arm.name}' (seed {seed}{f', x {x}' if x is not None else ''}) failed: {last}")
        out = json.loads(out_path.read_text())
    metrics = score(out["predictions"], rows["test_label"].numpy())
    result = {"metrics": metrics, "started": started.isoformat(timespec="seconds"),
              "finished": dt.datetime.now().isoformat(timespec="seconds"), "config": config,
              "rows": {"train": int(len(rows["train_label"])), "paired": int(rows["train_present"].all(1).sum()),
                       "test": int(len(rows["test_label"]))},
              **{k: out[k] for k in ("last_epoch_loss", "finite", "seconds", "parameters", "multivae", "torch", "partial")},
              "version": VERSION}
    rundir.write_json(folder / RESULT, result)
    return result


def run_peer_arm(claim: Claim, arm: Arm, xs: list[float], seeds: list[int], out: Path, quick: bool, train: bool,
                 echo: Callable[[str], None], trained: list | None = None) -> tuple[dict, str | None]:
    """x → seed → metrics for the arm, training the seeds not yet finished when ``train``; and why the arm was not
    run (None when it was). Without ``train`` (``--no-train``), the finished seeds alone."""
    if arm.peer not in MODELS:
        raise ModkitError(f"{claim.id}: arm '{arm.name}' names MultiVae model '{arm.peer}' (known: {', '.join(MODELS)})")
    base = peer_folder(claim, arm, quick, out)
    python, why = peer_python() if train else (None, None)
    found: dict[float | None, dict[int, dict[str, Any]]] = {}
    for x in xs or [None]:
        for seed in seeds:
            folder = base / (f"x-{x}" if x is not None else "x-none") / f"seed-{seed}"
            path = folder / RESULT
            result = json.loads(path.read_text()) if path.exists() else None
            if result is None and train and python is not None:
                echo(f"  MultiVae {arm.peer}: x {x}, seed {seed}")
                result = train_seed(python, claim, arm, quick, x, seed, folder)
            if result is None:
                continue
            found.setdefault(x, {})[seed] = result["metrics"]
            if trained is not None:
                trained += [dt.datetime.fromisoformat(result[k]) for k in ("started", "finished")]
    return found, (why if python is None and train else None)
