"""``python -m reproductions``: run the papers' claims over seeds beside their baselines and write the verdicts.

Every model arm of a claim is one grid sweep (``modkit.sweep``: Optuna study, run directories,
resume from checkpoints) over the claim's x values × seeds; arms that share recipe and settings share the
sweep. ``logreg`` arms fit scikit-learn on the labelled pairs the models were allowed to see. Results are
aggregated to mean ± sd, judged by the claim's rule (written in :mod:`reproductions.claims` before the
run) and written as ``reproductions.md`` + ``reproductions.json`` + one figure per claim, stamped with the
commit, date, machine, load and command. ``--quick`` (one seed, few epochs, one x) checks the machinery, not
the papers: its verdicts are inconclusive by construction.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
from pathlib import Path
from typing import Any, Callable

from modkit.errors import ModkitError
from reproductions import peer
from reproductions.claim_spec import find_recipe
from reproductions.claims import Arm, Claim, find, project_root
from reproductions import setups
from reproductions.fusion_tables import portable
from modkit.storage import files as rundir



RESULTS_MD = "reproductions.md"
RESULTS_JSON = "reproductions.json"


def recipe_path(arm: Arm) -> Path:
    return find_recipe(arm.recipe)


def arm_sets(claim: Claim, arm: Arm, quick: bool) -> list[str]:
    return [*arm.sets, *(claim.quick_sets if quick else ())]


def arm_key(claim: Claim, arm: Arm, quick: bool, evaluate: dict | None, xs: list, seeds: list[int],
            x_key: str | None = None, start: str = "") -> str:
    """Arms with the same recipe, settings, x values, seeds, evaluation and start share one sweep (and its runs)."""
    spec = [arm.recipe, arm_sets(claim, arm, quick), x_key, xs, seeds, evaluate] + ([start] if start else [])
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return f"{Path(arm.recipe).stem}-{digest}"


# -- running ----------------------------------------------------------------------------------

#: x → seed → a run's directory, per arm: where a later stage starts from
RunDirs = dict[float | None, dict[int, Path]]


def run_model_arm(claim: Claim, arm: Arm, xs: list[float], seeds: list[int], out: Path, quick: bool, workers: int,
                  echo: Callable[[str], None], trained: list | None = None, *, x_key: str | None | bool = True,
                  start: Path | None = None, dirs: RunDirs | None = None) -> dict[float | None, dict[int, dict[str, float]]]:
    """Train (or continue) the arm's sweep; x → seed → that run's metrics. ``trained`` collects when each trial ran
    (a rerun reuses finished trials, so the report says when its numbers were trained, not only when it was written).

    ``x_key``: the swept key (default the claim's; None: trained at no x). ``start``: the earlier stage's trial
    folder; each seed's run starts from ``start/seed-S`` through ``arm.init_key`` (the sweep's ``{seed}`` field).
    ``dirs`` receives x → seed → run directory."""
    from modkit import sweep

    x_key = claim.x_key if x_key is True else x_key
    evaluate = None if arm.kind == "pretrain" else (claim.quick_evaluate if quick and claim.quick_evaluate else claim.evaluate)
    where = "" if start is None else f"{arm.init_key}={os.path.relpath(start, out)}"  # the key does not depend on where OUT is
    folder = out / "arms" / arm_key(claim, arm, quick, evaluate, xs, seeds, x_key, where)
    overrides = arm_sets(claim, arm, quick)
    if start is not None:
        overrides.append(f"{arm.init_key}={start.resolve()}/seed-{sweep.SEED_FIELD}")
    if x_key:
        overrides.append(f"{x_key}={','.join(str(x) for x in xs)}")
    overrides.append(f"seed={','.join(str(s) for s in seeds)}")
    if (folder / sweep.SWEEP_JSON).exists():
        config, url = sweep.locate(str(folder), None, None)
    elif not workers:  # --no-train: an arm that never started has nothing to report
        return {}
    else:
        config, url = sweep.new_sweep(recipe_path(arm), overrides, folder, storage=None, study=None, sampler="grid",
                                      trials=None, objective="test/rec/" + _first_modality(recipe_path(arm)),
                                      direction="maximize", evaluate=evaluate is not None, settings=dict(evaluate or {}),
                                      plot=[(arm.metric or claim.metric).replace("{x}", "*")], device=None, heartbeat=30, echo=lambda s: echo("  " + s))
    if workers:  # 0 (--no-train): report the finished trials as they are
        sweep.run_workers(config, url, workers, lambda s: echo("  " + s))
    found: dict[float | None, dict[int, dict[str, float]]] = {}
    for trial in sweep.load_results(folder).complete():
        if trained is not None:
            trained += [d for d in (trial.started, trial.finished) if d is not None]
        x = float(trial.values.get(x_key, xs[0])) if x_key else None  # one x value is not a swept dimension
        for run in trial.runs:
            values = {**run.metrics, **eval_metrics(run.run_dir)}  # eval.json as it is now: a run evaluated again counts anew
            if claim.plateau is not None:  # what the plateau rule reads: the run's per-epoch series of its key
                values[HISTORY] = epoch_series(run.run_dir, claim.plateau.key)
            found.setdefault(x, {})[run.seed] = {k: (None if k in arm.not_applicable else v) for k, v in values.items()}
            if dirs is not None:
                dirs.setdefault(x, {})[run.seed] = run.run_dir
    return found


def run_after_arm(claim: Claim, arm: Arm, xs: list[float], seeds: list[int], out: Path, quick: bool, workers: int,
                  echo: Callable[[str], None], trained: list, earlier: RunDirs,
                  dirs: RunDirs | None = None) -> dict[float | None, dict[int, dict[str, float]]]:
    """The second stage of a two-stage arm: at each x, every seed's run starts from the earlier arm's run of the same
    seed (at the same x where the earlier arm is swept over x, else from its one run per seed). The x values that
    start from the same trial of the earlier arm share one sweep, so a rerun reuses what has finished."""
    groups: dict[Path, list[float]] = {}
    for x in xs or [None]:
        runs = earlier.get(x) or earlier.get(None)
        missing = [s for s in seeds if s not in (runs or {})]
        if missing and not workers:  # --no-train: the earlier stage has not finished, so neither has this one
            return {}
        if missing:
            raise ModkitError(f"{claim.id}: arm '{arm.name}' starts from '{arm.after}', which has no run of seed "
                              f"{missing[0]}{f' at {x}' if x is not None else ''}")
        trial_dirs = {runs[s].parent for s in seeds}
        assert len(trial_dirs) == 1, trial_dirs  # one trial holds every seed of a point
        groups.setdefault(trial_dirs.pop(), []).append(x)
    found: dict[float | None, dict[int, dict[str, float]]] = {}
    for start, group in groups.items():
        found.update(run_model_arm(claim, arm, [x for x in group if x is not None], seeds, out, quick, workers, echo, trained,
                                   start=start, dirs=dirs))
    return found


def best_of(claim: Claim, arm: Arm, runs: dict[str, dict], table: dict[str, dict[Any, dict]],
            tuning: dict[str, dict[Any, dict]] | None = None) -> tuple[dict, dict]:
    """A tuned arm: at each x, the runs and cell of the candidate with the best mean there (its name in the cell's
    ``arm``), so the table says which setting won where. With ``select_on`` the means that choose are those of each
    candidate's validation twin (in ``tuning``), never the test scenes'."""
    sign = -1.0 if claim.lower_is_better else 1.0
    judges = dict(zip(arm.best_of, arm.select_on)) if arm.select_on else {}
    scores = {name: (tuning or {}).get(judges[name], {}) if judges else table.get(name, {}) for name in arm.best_of}
    found_runs: dict = {}
    found: dict[Any, dict] = {}
    for x in {x for name in arm.best_of for x in table.get(name, {})}:
        scored = [(sign * scores[name][x]["mean"], name) for name in arm.best_of
                  if scores[name].get(x) and scores[name][x]["mean"] is not None and table.get(name, {}).get(x)]
        if scored:
            name = max(scored)[1]
            found[x], found_runs[x] = {**table[name][x], "arm": name}, runs.get(name, {}).get(x, {})
    return found_runs, found


#: the metrics key under which a run's per-epoch series of the plateau rule's key travels (not a metric)
HISTORY = "_history"


def epoch_series(run_dir: Path, key: str) -> list[float | None] | None:
    """The run's metrics.jsonl value of ``key`` at each epoch, or None when it has no such rows."""
    try:
        rows = rundir.read_metrics(run_dir)
    except ModkitError:
        return None
    series = [r.get(key) for r in rows]
    return series if series and any(v is not None for v in series) else None


def history(per_seed: dict[int, dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The mean over seeds of the per-epoch series (stored with a cell for the plateau rule), None unless every
    seed has one of the same length."""
    series = [m.get(HISTORY) for m in per_seed.values()]
    if not series or any(not s for s in series) or len({len(s) for s in series}) != 1:
        return None
    mean = [None if any(v is None for v in col) else statistics.fmean(col) for col in zip(*series)]
    return {"key": key, "mean": mean}


def eval_metrics(run_dir: Path) -> dict[str, float]:
    """The run's eval.json summarised by today's code (a rerun that reuses a trial gets the numbers the summary
    has gained since, e.g. the variance of the log importance weights), or nothing when it was not evaluated."""
    from modkit.evaluation.suite import EVAL_JSON, summarize

    path = run_dir / EVAL_JSON
    if not path.exists():
        return {}
    result = rundir.read_json(path)
    return summarize(result, list(result.get("modalities", [])))


def _first_modality(path: Path) -> str:
    from modkit.config.recipe import read_yaml

    return next(iter(read_yaml(path).get("modalities", {})), "image")


def logreg_on_pairs(claim: Claim, arm: Arm, x: float | None, quick: bool) -> dict[str, float]:
    """Balanced accuracy on the test split of a logistic regression from the image's pixels to each class-valued
    modality (a label, or each attribute bit of a split attribute), fitted on the training rows where the recipe
    shows the image and that modality together (the model's labelled pairs); keyed as the models' summaries key
    it, ``balanced_accuracy/image-><target>``."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modkit.config.recipe import load_recipe
    from modkit.evaluation.judges import balanced_accuracy
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    sets = arm_sets(claim, arm, quick) + ([f"{claim.x_key}={x}"] if claim.x_key else [])
    setup = build(load_recipe(recipe_path(arm), sets)[0], load_plugins())
    names = list(setup.train.modalities)
    image = names.index("image")
    test = setup.test.__getitems__(list(range(len(setup.test))))
    x_test = test.data["image"].flatten(1).numpy()
    scores = {}
    own = {n: getattr(setup.model.modalities[n], "select", lambda v: v) for n in names}  # a split attribute: its column
    for j, target in enumerate(names):
        values = test.data[target]
        values = own[target](values) if isinstance(values, torch.Tensor) else values
        if j == image or not isinstance(values, torch.Tensor) or values.reshape(len(values), -1).shape[1] != 1 \
                or values.is_floating_point() and not bool(((values == 0) | (values == 1)).all()):
            continue  # not one class per row: a caption, a mask, a multi-hot vector
        both = (setup.train.presence[:, image] & setup.train.presence[:, j]).nonzero().flatten().tolist()
        train = setup.train.__getitems__(both)
        x_train, y_train = train.data["image"].flatten(1).numpy(), own[target](train.data[target]).reshape(-1).long().numpy()
        y_test = values.reshape(-1).long().numpy()
        if len(np.unique(y_train)) < 2:
            y_pred = np.full_like(y_test, y_train[0] if len(y_train) else 0)
        else:
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            y_pred = clf.fit(x_train, y_train).predict(x_test)
        scores[f"balanced_accuracy/image->{target}"] = float(balanced_accuracy(y_test, y_pred))
    return scores


#: arms computed from the data, with no model: a logistic regression on the labelled pairs, and the transforms' floors
DATA_KINDS = ("logreg", "copy", "ridge")


def transform_source(claim: Claim) -> tuple[str, str]:
    """(source view, target) of a transform claim, read off its MSE key ``reconstruction/<source>-><target>/mse``."""
    import re

    keys = [claim.metric, *(m for m, _ in claim.also)]
    found = next((m for m in (re.match(r"reconstruction/([\w-]+)->([\w-]+)/mse$", k) for k in keys) if m), None)
    if found is None:
        raise ModkitError(f"claim {claim.id}: a copy or ridge arm needs a reconstruction/<source>-><target>/mse metric")
    return found.group(1), found.group(2)


def pixel_floor(claim: Claim, arm: Arm, x: float | None, quick: bool) -> dict[str, float]:
    """A transform's floor, scored as the models are: ``copy`` takes the source view itself as the image (one channel
    repeated over the target's), ``ridge`` a ridge regression from the source view's pixels to the target's, its
    penalty chosen by leave-one-out on the training rows (scikit-learn's RidgeCV) and its output clipped to [0, 1].
    Keys: ``reconstruction/<source>-><target>/mse`` (per element, as the reconstruction metric averages it) and
    ``coherence_mean/<source>-><target>/<attribute>`` (the dataset's judge reading the predicted image, class-balanced
    accuracy per attribute, a vector attribute averaged, as the coherence metric reports its posterior-mean variant)."""
    import numpy as np
    from sklearn.linear_model import RidgeCV

    from modkit.config.recipe import load_recipe
    from modkit.evaluation.judges import attribute_values
    from modkit.evaluation.metric import fast_balanced_accuracy, grouped
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build, dataset_source

    source, target = transform_source(claim)
    sets = arm_sets(claim, arm, quick) + ([f"{claim.x_key}={x}"] if claim.x_key else [])
    recipe = load_recipe(recipe_path(arm), sets)[0]
    plugins = load_plugins()
    setup = build(recipe, plugins)
    train = setup.train.__getitems__(list(range(len(setup.train))))
    test = setup.test.__getitems__(list(range(len(setup.test))))
    shape = tuple(test.data[target].shape[1:])

    def flat(t) -> np.ndarray:
        return t.float().flatten(1).numpy()

    if arm.kind == "copy":
        given = test.data[source].float()
        if given.shape[1:] != shape and (given.shape[1] != 1 or given.shape[2:] != shape[1:]):
            raise ModkitError(f"claim {claim.id}: {source} {tuple(given.shape[1:])} cannot be copied into {target} {shape}")
        predicted = flat(given.expand(len(given), *shape))  # one channel (grey, edges) shown in each of the target's
    else:
        model = RidgeCV(alphas=np.logspace(-1, 4, 11)).fit(flat(train.data[source]), flat(train.data[target]))
        predicted = np.clip(model.predict(flat(test.data[source])), 0.0, 1.0)
    truth = flat(test.data[target])
    scores = {f"reconstruction/{source}->{target}/mse": float(((predicted - truth) ** 2).mean(1).mean())}
    images = predicted.reshape(len(predicted), *shape).transpose(0, 2, 3, 1)  # the judge reads (H, W, C) images
    verdicts = dataset_source(recipe, plugins).judge(target, list(images))
    if verdicts:
        truth = attribute_values(setup.test.records, list(verdicts), setup.test.rows.numpy())
        per_attr = {}
        for name, found in verdicts.items():
            keep = truth[name] >= 0
            per_attr[name] = fast_balanced_accuracy(truth[name][keep], np.asarray(found)[keep])
        scores.update({f"coherence_mean/{source}->{target}/{a}": v for a, v in grouped(per_attr).items()})
    return scores


# -- aggregation and verdicts -------------------------------------------------------------------

def metric_value(metrics: dict[str, float], key: str) -> float | None:
    """A run's number for ``key``; a key with ``*`` is the mean of the keys it matches (e.g. every attribute's
    balanced accuracy), None when none does. A key a run has as it is (``attributes[*]``, a vector attribute's mean)
    is read as it is."""
    if "*" not in key or key in metrics:
        return metrics.get(key)
    import fnmatch

    found = [v for k, v in metrics.items() if fnmatch.fnmatchcase(k, key) and v is not None and math.isfinite(v)]
    return statistics.fmean(found) if found else None


def at_x(metric: str, x: Any) -> str:
    """The key a metric names at x: ``{x}`` replaced by x (``coherence/given_{x}`` at 2 is ``coherence/given_2``)."""
    return metric.replace("{x}", f"{x:g}" if isinstance(x, (int, float)) else str(x)) if "{x}" in metric else metric


def cells(values: dict[Any, dict[int, dict[str, float]]], metric: str, plateau_key: str | None = None) -> dict[Any, dict]:
    """x → seed → metrics, as x → the table's cell (mean ± sd over the seeds) for ``metric`` (at x: :func:`at_x`); with
    ``plateau_key`` each cell also keeps the mean per-epoch history of that key, where every seed recorded one."""
    out = {}
    for x, per_seed in values.items():
        out[x] = stats([metric_value(m, at_x(metric, x)) for m in per_seed.values()])
        found = history(per_seed, plateau_key) if plateau_key else None
        if found:
            out[x]["history"] = found
    return out


def stats(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}


def gap_verdict(subject: dict[Any, dict], baseline: dict[Any, dict], region: list) -> tuple[str, list[dict]]:
    """The default rule (claims.GAP_RULE) over the region's x values."""
    rows = []
    for x in region:
        s, b = subject.get(x), baseline.get(x)
        if not s or not b or s["mean"] is None or b["mean"] is None:
            continue
        gap = s["mean"] - b["mean"]
        if s["n"] < 2 and b["n"] < 2:
            se = None
        else:
            se = math.sqrt(((s["sd"] or 0.0) ** 2) / s["n"] + ((b["sd"] or 0.0) ** 2) / b["n"])
        rows.append({"x": x, "gap": gap, "se": se})
    if not rows:
        return "inconclusive", rows
    if any(r["se"] is None for r in rows) and not any(r["se"] for r in rows):
        return "inconclusive", rows
    if any(r["se"] is not None and r["gap"] > 2 * r["se"] for r in rows):
        return "reproduced", rows
    if all(r["se"] is not None and r["gap"] < -2 * r["se"] for r in rows):
        return "contradicted", rows
    if any(r["gap"] > 0 for r in rows):
        return "reproduced in direction only", rows
    return "not reproduced", rows


def above_baseline(claim: Claim, table: dict[str, dict[Any, dict]]) -> list[dict]:
    """Where each model arm, not only the subject, beats the baseline by the claim's rule (gap > 2·se): the
    question a reader of a weak-supervision curve asks is where, if anywhere, any multimodal VAE wins."""
    found = []
    sign = -1.0 if claim.lower_is_better else 1.0
    for arm in claim.arms:
        if arm.name == claim.baseline or arm.kind not in ("model", peer.KIND) or arm.name not in table or claim.baseline not in table:
            continue
        if arm.at is not None:  # a reference trained at one x is not a result at the others
            continue
        xs = sorted(table[arm.name], key=lambda x: (x is None, x or 0.0))
        _, rows = gap_verdict(table[arm.name], table[claim.baseline], xs)
        found += [{"arm": arm.name, **r, "gap": sign * r["gap"]} for r in rows
                  if r["se"] is not None and sign * r["gap"] > 2 * r["se"]]
    return found


def verdict(claim: Claim, table: dict[str, dict[Any, dict]], runs: dict[str, dict], quick: bool = False) -> tuple[str, list[dict]]:
    if quick:  # one seed, a few epochs: the machinery ran, the papers were not tested
        return "inconclusive", []
    if claim.judge == "no_divergence":
        seeds = [m for per_x in runs.get(claim.subject, {}).values() for m in per_x.values()]
        if not seeds:
            return "inconclusive", []
        bad = [m for m in seeds if m.get("skipped_steps", 0) or m.get("rollbacks", 0) or m.get("test/elbo") is None]
        return ("contradicted" if bad else "reproduced"), [{"seeds": len(seeds), "diverged": len(bad)}]
    subject, baseline = table[claim.subject], table[claim.baseline]
    if claim.lower_is_better:  # the gap is the baseline's error minus the subject's
        subject, baseline = ({x: {**c, "mean": -c["mean"] if c["mean"] is not None else None} for x, c in t.items()}
                             for t in (subject, baseline))
    region = [x for x in (claim.region or list(subject)) if x in subject] or list(subject)
    result, rows = gap_verdict(subject, baseline, region)
    if claim.judge == "not_worse" and result != "inconclusive" and rows:
        r = rows[0]
        result = "reproduced" if r["gap"] > 0 else ("contradicted" if r["gap"] < -2 * (r["se"] or 0) else "reproduced in direction only")
    return result, rows


# -- the report -------------------------------------------------------------------------------------

def provenance(command: list[str]) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import torch

    return {"commit": git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}",
            "load": " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "",
            "command": portable(shlex.join(command), project_root())}


def figure(claim: Claim, table: dict[str, dict[Any, dict]], path: Path) -> Path | None:
    if not claim.x_key:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in claim.arms:
        cells = sorted((x, c) for x, c in table.get(arm.name, {}).items() if c["mean"] is not None)
        if not cells:
            continue
        xs = [x for x, _ in cells]
        ax.errorbar(xs, [c["mean"] for _, c in cells], yerr=[c["sd"] or 0.0 for _, c in cells], marker="o", capsize=3,
                    label=arm.title, linestyle=":" if arm.at is not None else ("--" if arm.kind != "model" else "-"))
    ax.set_xscale("log")
    ax.set_xlabel(claim.x_key)
    counts = setups.x_counts(claim, sorted({x for t in table.values() for x in t if x is not None}))
    if counts:  # the absolute number each fraction stands for, under it
        ticks = sorted(float(x) for x in counts)
        ax.set_xticks(ticks, [f"{x:g}\n({counts[str(x)]:,})" for x in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"{claim.x_key} ({claim.x_count})")
    ax.set_ylabel(claim.metric_label)
    ax.set_title(claim.title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def span(times: list) -> str:
    """When the trials ran: the first start to the last end."""
    return f"{min(times).isoformat(timespec='seconds')} to {max(times).isoformat(timespec='seconds')}"


def claim_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of a report's stamp that belongs to each claim it measured."""
    return {k: meta[k] for k in ("commit", "date", "trained", "machine", "command") if meta.get(k)}


def arm_record(claim: Claim, arm: Arm) -> dict[str, Any]:
    """How the report records an arm: what it is (kind, recipe, ``--set`` values, metric, start, candidates) and a
    digest of its declaration (the recipe's text included), so a later run can tell whether its cells still stand."""
    return {"name": arm.name, "title": arm.title, "kind": arm.kind, "recipe": arm.recipe, "sets": list(arm.sets),
            "after": arm.after, "metric": arm.metric or claim.metric, **({"best_of": list(arm.best_of)} if arm.best_of else {}),
            **({"chosen_on": "a validation split of the training scenes (" + ", ".join(f"`{t}`" for t in arm.select_on) + ")"}
               if arm.select_on else {}),
            **({"peer": f"MultiVae {arm.peer}"} if arm.kind == peer.KIND else {}),
            "digest": setups.arm_digest(arm)}


#: what must match between an arm as declared now and as a stored entry recorded it for its cells to be carried
DEFINITION = ("kind", "recipe", "sets", "metric", "after", "best_of", "peer")


def carried(claim: Claim, arm: Arm, xs: list, stored: dict | None) -> dict[str, Any] | None:
    """The stored cells of an arm this run did not measure, where the stored entry of the claim measured the same arm
    (same kind, recipe, ``--set`` values, metric; the same declaration digest where the entry recorded one) at the
    same x values: ``{"table", "also", "from"}`` (``from``: the stamp of the run that measured them), else None."""
    if not stored or stored.get("quick") or [x for x in stored.get("xs", [])] != list(xs):
        return None
    mine = arm_record(claim, arm)
    theirs = next((a for a in stored.get("arms", []) if a.get("name") == arm.name), None)
    if theirs is None or arm.name not in stored.get("table", {}):
        return None
    if any((mine.get(k) or None) != (theirs.get(k) or None) for k in DEFINITION):
        return None
    if theirs.get("digest") and theirs["digest"] != mine["digest"]:
        return None
    keys = {str(x): x for x in xs}
    table = {keys[k]: c for k, c in stored["table"][arm.name].items() if k in keys}
    if not any(c.get("n") for c in table.values()):
        return None
    also = {m: {keys[k]: c for k, c in extra.get("table", {}).get(arm.name, {}).items() if k in keys}
            for m, extra in (stored.get("also") or {}).items()}
    source = theirs.get("carried_from") or {k: v for k, v in (stored.get("meta") or {}).items()
                                            if k in ("command", "commit", "date", "trained")}
    return {"table": table, "also": also, "from": source}


def previous_results(report: Path) -> dict[str, dict]:
    """The claims of the report as it stands (each with its stamp; one written before claims had their own gets
    the file's): what a command given only some claims keeps of the others."""
    path = report.with_suffix(".json")
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("quick"):
            return {}
        return {c["id"]: {**c, "meta": c.get("meta") or claim_meta(data["meta"])} for c in data["claims"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModkitError(f"{path}: not a report python -m reproductions wrote ({exc}); move it away to write a new one") from None


def merged(results: list[dict], previous: dict[str, dict]) -> list[dict]:
    """The new results in place of their earlier rows, the other earlier rows kept, in the catalogue's order."""
    from reproductions.claims import CLAIMS

    rows = {**previous, **{r["id"]: r for r in results}}
    order = {c.id: i for i, c in enumerate(CLAIMS)}
    return sorted(rows.values(), key=lambda r: order.get(r["id"], len(order)))


def write_report(results: list[dict], meta: dict[str, Any], out: Path, figures_dir: Path, quick: bool) -> Path:
    """The JSON (what was measured) and the page rendered from it (:mod:`reproductions.render`)."""
    from reproductions.render import render

    out.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(out, render(results, meta, out, quick))
    rundir.write_json(out.with_suffix(".json"), {"meta": meta, "quick": quick, "claims": results})
    return out


def reproduce(claim_ids: list[str], quick: bool, seeds: int, workers: int, out: Path, report: Path,
              figures_dir: Path, command: list[str], echo: Callable[[str], None] = print,
              catalogue: list[Claim] | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """``catalogue``: the claims to run in place of the declared ones (``--tier paper``'s, their paper settings
    applied). ``only``: the arms (by name) to train; the others report what has finished, as under ``--no-train``."""
    claims = find(claim_ids) if catalogue is None else list(catalogue)
    if only:
        names = {a.name for c in claims for a in c.arms}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ModkitError(f"--arms: no arm '{unknown[0]}' in {', '.join(c.id for c in claims)} (arms: {', '.join(sorted(names))})")
    meta = provenance(command)  # the code that runs: taken before, not after, the hours of training
    seed_list = list(range(1 if quick else seeds))
    spans: list = []  # start and end times of every trial the report's numbers come from
    if not quick and seeds < 3:
        echo(f"warning: {seeds} seed(s): the project reports means ± sd over at least 3")
    results = []
    previous = {} if quick else previous_results(report)
    for claim in claims:
        xs = list(claim.quick_xs if quick and claim.quick_xs else claim.xs) or [None]
        echo(f"{claim.id}: {len(claim.arms)} arm(s) × {len(xs) if claim.x_key else 1} x × {len(seed_list)} seed(s)")
        runs: dict[str, dict] = {}
        table: dict[str, dict[Any, dict]] = {}
        trained: list = []
        dirs: dict[str, RunDirs] = {}  # each arm's run directories: where its later stages start
        swept = [x for x in xs if x is not None]
        not_run: dict[str, str] = {}  # arm → why (an optional extra is not installed)
        tuning: dict[str, dict[Any, dict]] = {}  # validation twins' cells, by arm
        kept: dict[str, dict] = {}  # arm → the stored cells carried over for it (:func:`carried`)

        def keep(arm: Arm) -> None:
            """An arm with no finished trial in OUT: its stored cells, where the stored entry measured the same arm."""
            found = carried(claim, arm, xs, previous.get(claim.id))
            if found is not None:
                kept[arm.name] = found
                runs[arm.name], table[arm.name] = {}, found["table"]
                not_run.pop(arm.name, None)
                echo(f"  no finished trial in {out}: its stored cells are kept (measured by {found['from'].get('command', '?')})")
        for arm in claim.arms:
            echo(f" {arm.name}" + (f" (from {arm.after})" if arm.after else ""))
            metric = arm.metric or claim.metric
            arm_workers = workers if not only or arm.name in only else 0  # an arm not named: its finished runs only
            missing = [m for m in arm.requires if importlib.util.find_spec(m) is None]
            if missing or arm.after in not_run:
                not_run[arm.name] = (f"needs the module {missing[0]} (an optional extra)" if missing
                                     else f"starts from {arm.after}, which was not run")
                echo(f"  not run: {not_run[arm.name]}")
                if arm.kind != "pretrain":
                    runs[arm.name], table[arm.name] = {}, {}
                continue
            if arm.kind == "best":
                runs[arm.name], table[arm.name] = best_of(claim, arm, runs, table, tuning)
                continue
            if arm.kind in DATA_KINDS:  # fitted below, once the claim's row is known not to be kept
                continue
            if arm.kind == peer.KIND:  # MultiVae's model on the same rows, in its own venv
                values, why = peer.run_peer_arm(claim, arm, swept, seed_list, out, quick, bool(arm_workers), echo, trained)
                if why and not values:
                    not_run[arm.name] = why
                    echo(f"  not run: {why}")
                runs[arm.name], table[arm.name] = values, cells(values, metric)
                if not values:
                    keep(arm)
                continue
            if arm.at is not None:  # one x for every x: a reference line
                values = run_model_arm(claim, arm, [arm.at] if claim.x_key else [], seed_list, out, quick, arm_workers, echo,
                                       trained, dirs=dirs.setdefault(arm.name, {}))
                values = {x: next(iter(values.values())) for x in xs} if values else {}
            elif claim.x_in_metric:  # x picks the metric's key, not a setting: one training per seed, read at every x
                values = run_model_arm(claim, arm, [], seed_list, out, quick, workers, echo, trained, x_key=None,
                                       dirs=dirs.setdefault(arm.name, {}))
                values = {x: next(iter(values.values())) for x in xs} if values else {}
            elif arm.after:
                values = run_after_arm(claim, arm, swept, seed_list, out, quick, arm_workers, echo, trained, dirs[arm.after],
                                       dirs.setdefault(arm.name, {}))
            else:
                values = run_model_arm(claim, arm, [] if arm.kind == "pretrain" else swept, seed_list, out, quick, arm_workers,
                                       echo, trained, x_key=None if arm.kind == "pretrain" else True,
                                       dirs=dirs.setdefault(arm.name, {}))
            if arm.kind == "pretrain":  # a start for later arms, not a row of the tables
                continue
            if arm.kind == "tune":  # a validation twin: read by a tuned arm's choice, not a column
                tuning[arm.name] = cells(values, metric)
                continue
            runs[arm.name], table[arm.name] = values, cells(values, metric, claim.plateau.key if claim.plateau else None)
            if not values and arm.kind == "model":
                keep(arm)
        spans.extend(trained)
        if not workers and claim.id in previous and not any(runs.get(a.name) for a in claim.arms if a.kind in ("model", peer.KIND)):
            echo(f" → no finished run of its models in {out}: its earlier row is kept ({previous[claim.id]['verdict']})")
            continue
        for arm in claim.arms:
            if arm.kind in DATA_KINDS and arm.name not in not_run:
                fit = logreg_on_pairs if arm.kind == "logreg" else pixel_floor
                runs[arm.name] = {x: {0: fit(claim, arm, x, quick)} for x in xs}
                table[arm.name] = cells(runs[arm.name], arm.metric or claim.metric)
        # the claim's arm order, whatever order they were computed in
        runs, table = ({a.name: d[a.name] for a in claim.arms if a.name in d} for d in (runs, table))
        also = {metric: {"label": label, "table": {arm: {str(x): c for x, c in cells(values, metric).items()}
                                                   for arm, values in runs.items()}}
                for metric, label in claim.also}  # a tuned arm's: those of the setting its metric chose
        for metric in also:  # an arm whose cells were carried: its stored cells of the other metrics too
            also[metric]["table"].update({arm: {str(x): c for x, c in k["also"].get(metric, {}).items()}
                                          for arm, k in kept.items()})
        reported = [a for a in claim.arms if a.kind not in ("pretrain", "tune")]
        result, evidence = verdict(claim, table, runs, quick)
        beats = None if quick or claim.judge != "gap" else above_baseline(claim, table)
        fig = figure(claim, table, figures_dir / f"{claim.id}.png")
        results.append({"id": claim.id, "title": claim.title, "source": claim.source, "statement": claim.statement,
                        "paper_number": claim.paper_number, "metric": claim.metric, "metric_label": claim.metric_label,
                        "subject": claim.subject, "baseline": claim.baseline, "x_key": claim.x_key, "xs": xs,
                        "arms": [{**arm_record(claim, a), **({"carried_from": kept[a.name]["from"]} if a.name in kept else {})}
                                 for a in reported],
                        "tuning": {name: {str(x): c for x, c in t.items()} for name, t in tuning.items()},
                        "declaration": setups.digest(claim), "measured": result,
                        "stages": [{"name": a.name, "recipe": a.recipe, "sets": list(a.sets)} for a in claim.arms
                                   if a.kind == "pretrain"],
                        "not_run": not_run,
                        "table": {a: {str(x): c for x, c in cells.items()} for a, cells in table.items()},
                        "also": also, "above_baseline": beats, "verdict": result, "rule": claim.rule, "evidence": evidence, "diagnosis": claim.diagnosis,
                        "figure": portable(str(fig), project_root()) if fig else None,  # relative to the repository
                        "meta": {**claim_meta(meta), **({"trained": span(trained)} if trained else {})}})
        echo(f" → {result}")
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if spans:
        meta["trained"] = f"{span(spans)} (local time of the trials)"
    meta["load"] = provenance(command)["load"]
    path = write_report(merged(results, previous), meta, report, figures_dir, quick)
    echo(f"wrote {path} and {path.with_suffix('.json')}")
    if not quick and (path.parent / "fusions").is_dir():  # the docs: each fusion page quotes its arms' rows
        from reproductions import fusion_tables

        for page in fusion_tables.write(path.with_suffix(".json"), path.parent):
            echo(f"updated {page}")
    return {"results": results, "meta": meta, "report": path}

