"""The verdict a reader sees: the rule's measured result qualified by scale, convergence and whose question it is.

The claim's rule (:data:`reproductions.claim_spec.GAP_RULE` or its own) decides from the table whether the subject
beats, matches or falls short of the baseline: the *measured* verdict, stored in the JSON as ``verdict``. What the
page says is decided here, from the claim's declaration and that measured verdict:

1. a question the paper did not pose (``question="modkit"``) is labelled modkit's own: "holds", "does not hold";
2. else, where an arm the rule reads has not plateaued by the claim's :class:`Plateau` rule: **inconclusive (still
   improving)**;
3. else a measured "contradicted" or "not reproduced" stands only when every declared key setting matches the
   paper's; otherwise it is **not reproduced at this scale**, the deviations named.

Where a stored result has no per-epoch history, the plateau is reported as not checked, never guessed.
"""
from __future__ import annotations

import math
from typing import Any

from reproductions.claim_spec import Plateau

STILL_IMPROVING = "inconclusive (still improving)"
AT_THIS_SCALE = "not reproduced at this scale"
FAILING = ("contradicted", "not reproduced")
#: the measured verdict of a question the paper did not pose, in words that do not speak for the paper
OWN = {"reproduced": "holds", "reproduced in direction only": "holds in direction only", "not reproduced": "does not hold",
       "contradicted": "does not hold", "inconclusive": "inconclusive"}
OWN_SUFFIX = " (modkit's own question)"

#: the rule text every page carries above the claims
VOCABULARY = (
    "The rule of each claim (written before its run) gives the *measured* verdict: **reproduced**, **reproduced in "
    "direction only**, **not reproduced** or **contradicted** (with one seed, **inconclusive**). The page's verdict "
    "then carries scale: **contradicted** stands only when every key setting the claim declares matches the paper's "
    "(its setup table marks each); where one differs, the verdict is **not reproduced at this scale** with the "
    "deviations named. Where an arm the rule reads has not plateaued by the claim's plateau rule (also written "
    "before the run), the verdict is **inconclusive (still improving)**; a result stored without per-epoch history "
    "says the plateau was not checked. A question the paper did not pose is labelled **modkit's own question** "
    "(holds / does not hold), never a verdict on the paper. A diagnosis names the control (an arm or claim) that "
    "supports it; one whose control has no result is shown as unsupported.")


def improving(history: list[float | None], rule: Plateau) -> bool | None:
    """Whether a per-epoch series (the mean over seeds) is still improving by ``rule``; None when too short or
    incomplete to tell."""
    values = [v for v in history if v is not None and math.isfinite(v)]
    if len(values) != len(history) or len(values) < 4:
        return None
    window = max(2, math.ceil(rule.window * len(values)))
    if window >= len(values):
        return None
    before, last = values[:-window], values[-window:]
    sign = -1.0 if rule.lower_is_better else 1.0
    best_before = max(sign * v for v in before)
    best_last = max(sign * v for v in last)
    return best_last - best_before > rule.tolerance * abs(best_before)


def plateau_state(result: dict[str, Any], rule: Plateau | None, arms: list[str]) -> dict[str, Any]:
    """``{"state": "plateaued" | "improving" | "not checked" | "no rule", "improving": [(arm, x)], "why": ...}``
    for the ``arms`` the verdict reads, from the per-epoch histories the result stored (``history`` of a cell)."""
    if rule is None:
        return {"state": "no rule", "improving": []}
    found, missing = [], []
    for arm in arms:
        for x, cell in (result.get("table", {}).get(arm) or {}).items():
            if not cell or cell.get("mean") is None:
                continue
            history = cell.get("history")
            if not history or history.get("key") != rule.key:
                missing.append((arm, x))
                continue
            still = improving(history.get("mean") or [], rule)
            if still is None:
                missing.append((arm, x))
            elif still:
                found.append((arm, x))
    if found:
        return {"state": "improving", "improving": found}
    if missing:
        return {"state": "not checked", "improving": [], "missing": missing}
    return {"state": "plateaued", "improving": []}


def qualified(measured: str, *, question: str = "paper", plateau: dict[str, Any] | None = None,
              deviations: list[str] = ()) -> str:
    """The page's verdict from the rule's measured one (see the module's docstring for the order)."""
    if question == "modkit":
        return OWN.get(measured, measured) + OWN_SUFFIX
    if measured == "inconclusive":
        return measured
    if plateau and plateau.get("state") == "improving":
        return STILL_IMPROVING
    if measured in FAILING and deviations:
        return AT_THIS_SCALE
    return measured


def control_result(control: str, claim_id: str, results: dict[str, dict[str, Any]]) -> bool:
    """Whether a diagnosis's control has a result: an arm of the claim (``arm``), of another claim
    (``claim/arm``), or a whole claim (``claim``) with a measured verdict."""
    if "/" in control:
        owner, arm = control.split("/", 1)
    elif control in results:
        other = results[control]
        return any(c and c.get("mean") is not None for t in other.get("table", {}).values() for c in t.values())
    else:
        owner, arm = claim_id, control
    cells = (results.get(owner) or {}).get("table", {}).get(arm) or {}
    return any(c and c.get("mean") is not None for c in cells.values())
