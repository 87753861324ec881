"""Each claim's setup beside the paper's, computed from the arms' resolved recipes (never typed), and the digest of a
claim's declaration that tells a stored result from one measured under a declaration since changed.

modkit's column reads a recipe after the arm's ``--set`` values (``load_recipe``, defaults filled in); counts of
rows come from the dataset itself (``load_records``: the same train/test split training uses) and the weak-
supervision rule of the data layer (``round(x · training rows)`` pairs). The paper's column is the claim's own
declaration (:class:`reproductions.claim_spec.Setting`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, Callable

from modkit.errors import ModkitError
from reproductions.claim_spec import Arm, Claim, Setting, find_recipe


@functools.lru_cache(maxsize=64)
def _resolved(recipe: str, sets: tuple[str, ...]) -> dict[str, Any]:
    from modkit.config.recipe import load_recipe

    return load_recipe(find_recipe(recipe), list(sets))[1]


@functools.lru_cache(maxsize=64)
def _rows(recipe: str, sets: tuple[str, ...]) -> tuple[int, int]:
    """(training rows, test rows) of the recipe's dataset, split as training splits it."""
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import load_records

    parsed = load_recipe(find_recipe(recipe), list(sets))[0]
    _, train, test = load_records(parsed, load_plugins(), None)
    return len(train), len(test)


@functools.lru_cache(maxsize=64)
def _written(recipe: str, sets: tuple[str, ...]) -> dict[str, Any]:
    """The recipe as written with the arm's ``--set`` values applied, before defaults are filled in: what the
    declaration says (a default the library adds later does not make every stored result stale)."""
    from modkit.config.recipe import apply_overrides, read_yaml

    return apply_overrides(read_yaml(find_recipe(recipe)), list(sets))


def resolved(arm: Arm) -> dict[str, Any]:
    return _resolved(arm.recipe, tuple(arm.sets))


def train_rows(arm: Arm) -> int:
    return _rows(arm.recipe, tuple(arm.sets))[0]


def pairs(n_train: int, x: float) -> int:
    """The paired (labelled, aligned) training rows at paired fraction ``x``: the data layer's rule
    (``modkit.data.dataset.weak_supervision``)."""
    return n_train if x >= 1.0 else int(round(x * n_train))


def get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


# -- readers: arm → (what the table shows, what "matching" compares) ------------------------------------------

def _dataset(arm: Arm, claim: Claim) -> tuple[str, Any]:
    spec = get(resolved(arm), "data.dataset") or {}
    name = spec.get("type") if isinstance(spec, dict) else spec
    n_train, n_test = _rows(arm.recipe, tuple(arm.sets))
    return f"{name}: {n_train:,} training, {n_test:,} test rows", n_train


def _train_rows(arm: Arm, claim: Claim) -> tuple[str, Any]:
    n = train_rows(arm)
    return f"{n:,}", n


def _resolution(arm: Arm, claim: Claim) -> tuple[str, Any]:
    shapes = [m.get("shape") for m in (get(resolved(arm), "modalities") or {}).values()
              if isinstance(m, dict) and m.get("type") == "image" and m.get("shape")]
    if not shapes:
        return "no image", None
    shape = shapes[0]
    return f"{shape[-2]}×{shape[-1]}" + (f", {shape[0]} channel(s)" if len(shape) == 3 else ""), int(shape[-1])


def _pairs(arm: Arm, claim: Claim) -> tuple[str, Any]:
    """The absolute number of paired rows at each x of the claim (or at the recipe's own fraction)."""
    n = train_rows(arm)
    xs = [arm.at] if arm.at is not None else (list(claim.xs) if claim.x_key else [get(resolved(arm), "data.paired_fraction") or 1.0])
    counts = [pairs(n, float(x)) for x in xs]
    return ", ".join(f"{c:,} ({x:g})" for c, x in zip(counts, xs)), counts[0] if len(counts) == 1 else tuple(counts)


def _epochs(arm: Arm, claim: Claim) -> tuple[str, Any]:
    epochs = get(resolved(arm), "train.epochs")
    return f"{epochs}", epochs


def _beta(arm: Arm, claim: Claim) -> tuple[str, Any]:
    beta = get(resolved(arm), "model.beta") or {}
    start, end, over = beta.get("start", 0.0), beta.get("end", 1.0), beta.get("anneal_epochs", 0.0)
    if not over or start == end:
        return f"β = {_fmt(float(end))} throughout", 0
    return f"{_fmt(float(start))} → {_fmt(float(end))} over {_fmt(float(over))} epochs", float(over)


def _weights(arm: Arm, claim: Claim) -> tuple[str, Any]:
    mods = get(resolved(arm), "modalities") or {}
    weights = {name: float(m.get("weight", 1.0)) for name, m in mods.items() if isinstance(m, dict)}
    return ", ".join(f"{n} {_fmt(w)}" for n, w in weights.items()), tuple(weights.values())


def _latent(arm: Arm, claim: Claim) -> tuple[str, Any]:
    fusion = get(resolved(arm), "model.fusion") or {}
    size = fusion.get("z_dim") if isinstance(fusion, dict) and fusion.get("z_dim") else get(resolved(arm), "model.latent_dim")
    return f"{size}", size


def _batch(arm: Arm, claim: Claim) -> tuple[str, Any]:
    size, paired = get(resolved(arm), "data.batch_size"), get(resolved(arm), "data.paired_per_batch")
    if paired:
        return f"{size} rows: {paired} paired + {size - paired} unpaired", paired
    return f"{size} rows drawn at random (paired and unpaired mixed)", None


def _word_dropout(arm: Arm, claim: Claim) -> tuple[str, Any]:
    mods = get(resolved(arm), "modalities") or {}
    rates = {n: float(m.get("word_dropout", 0.0)) for n, m in mods.items()
             if isinstance(m, dict) and m.get("type") in ("caption", "translation")}
    shown = ", ".join(f"{n} {_fmt(r)}" for n, r in rates.items()) or "no text modality"
    return ("none (" + shown + ")" if not any(rates.values()) else shown), any(rates.values())


def _fusion(arm: Arm, claim: Claim) -> tuple[str, Any]:
    fusion = get(resolved(arm), "model.fusion")
    name = fusion.get("type") if isinstance(fusion, dict) else fusion
    sampler = get(resolved(arm), "model.sampler") or {}
    extra = f", sampler {sampler.get('type')}" + (f" k = {sampler['k']}" if "k" in sampler else "") if isinstance(sampler, dict) and sampler.get("type") else ""
    return f"{name}{extra}", name


def _baseline(arm: Arm, claim: Claim) -> tuple[str, Any]:
    base = next((a for a in claim.arms if a.name == claim.baseline), None)
    return (base.title if base else claim.baseline), claim.baseline


def _lr(arm: Arm, claim: Claim) -> tuple[str, Any]:
    lr = get(resolved(arm), "train.lr")
    return f"Adam {lr:g}" if isinstance(lr, (int, float)) else str(lr), lr


READERS: dict[str, Callable[[Arm, Claim], tuple[str, Any]]] = {
    "dataset": _dataset, "train_rows": _train_rows, "resolution": _resolution, "pairs": _pairs, "epochs": _epochs,
    "beta": _beta, "weights": _weights, "latent": _latent, "batch": _batch, "word_dropout": _word_dropout,
    "fusion": _fusion, "baseline": _baseline, "lr": _lr,
}


def recipe_arm(claim: Claim, name: str) -> Arm | None:
    """The arm whose recipe a setting of ``name`` reads: the arm itself, or for a tuned arm (no recipe of its own)
    its first candidate."""
    arm = next((a for a in claim.arms if a.name == name), None)
    if arm is not None and not arm.recipe and arm.best_of:
        return recipe_arm(claim, arm.best_of[0])
    return arm if arm is not None and arm.recipe else None


def read(setting: Setting, claim: Claim) -> tuple[str, Any]:
    """modkit's value of one setting: (shown, compared)."""
    arm = recipe_arm(claim, setting.arm or claim.subject)
    if arm is None:
        name = setting.arm or claim.subject
        raise ModkitError(f"{claim.id}: setting '{setting.name}' reads arm '{name}', which has no recipe")
    if setting.read.startswith("@"):
        reader = READERS.get(setting.read[1:])
        if reader is None:
            raise ModkitError(f"{claim.id}: setting '{setting.name}': unknown reader {setting.read} "
                              f"(readers: {', '.join('@' + r for r in READERS)})")
        return reader(arm, claim)
    value = get(resolved(arm), setting.read)
    return ("not set" if value is None else _fmt(value)), value


def same(mine: Any, paper: Any) -> bool:
    if isinstance(mine, (int, float)) and isinstance(paper, (int, float)) and not isinstance(mine, bool):
        return math.isclose(float(mine), float(paper), rel_tol=1e-6)
    if isinstance(mine, tuple) and isinstance(paper, tuple):
        return len(mine) == len(paper) and all(same(a, b) for a, b in zip(mine, paper))
    return mine == paper


def setup_rows(claim: Claim) -> list[dict[str, Any]]:
    """The claim's setup table: each setting with modkit's value (computed), the paper's (declared) and, for a key
    setting, whether they match."""
    rows = []
    for s in claim.setup:
        try:
            shown, mine = read(s, claim)
        except ModkitError as exc:  # a stored arm without its recipe, a recipe since removed: said, not guessed
            shown, mine = f"not read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", None
        row = {"name": s.name, "modkit": shown, "paper": s.paper, "key": s.key}
        if s.key:
            row["matches"] = s.value is not None and same(mine, s.value)
        rows.append(row)
    return rows


def deviations(rows: list[dict[str, Any]]) -> list[str]:
    """The key settings that differ from the paper's, as the page names them."""
    return [f"{r['name']} (modkit {r['modkit']}; paper {r['paper']})" for r in rows if r.get("key") and not r.get("matches")]


def x_counts(claim: Claim, xs: list | None = None) -> dict[str, int]:
    """x → the absolute count it stands for (``claim.x_count``): round(x · the subject's training rows)."""
    if not claim.x_count or not claim.x_key:
        return {}
    arm = recipe_arm(claim, claim.subject)
    n = train_rows(arm)
    return {str(x): pairs(n, float(x)) for x in (claim.xs if xs is None else xs) if x is not None}


# -- the declaration's digest -------------------------------------------------------------------------------

def _arm_declaration(a: Arm) -> dict[str, Any]:
    # the fields set away from their defaults: a field Arm gains later does not change every digest
    spec = {f.name: list(v) if isinstance(v, tuple) else v for f in dataclasses.fields(a)
            if f.name != "label" and (v := getattr(a, f.name)) != f.default}
    if a.recipe:
        try:
            spec["recipe_text"] = _written(a.recipe, tuple(a.sets))
        except ModkitError:
            spec["recipe_text"] = None
    return spec


def declaration(claim: Claim) -> dict[str, Any]:
    """What a claim's measurement and verdict depend on: its arms (each recipe as written, after its ``--set``
    values), x values, evaluation, metric, region and judge. Labels, notes, diagnoses and the paper's column are
    not part of it: rewording them does not make a stored result stale."""
    return {"metric": claim.metric, "arms": [_arm_declaration(a) for a in claim.arms], "subject": claim.subject,
            "baseline": claim.baseline, "x_key": claim.x_key, "xs": list(claim.xs), "region": list(claim.region),
            "evaluate": claim.evaluate, "judge": claim.judge, "lower_is_better": claim.lower_is_better,
            "plateau": None if claim.plateau is None else vars(claim.plateau)}


def digest(claim: Claim) -> str:
    text = json.dumps(declaration(claim), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def arm_digest(arm: Arm) -> str:
    """One arm's part of :func:`declaration` (its recipe's text included): whether a stored arm's cells still stand
    for the arm as declared now."""
    text = json.dumps(_arm_declaration(arm), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
