"""The spread of a training-step configuration timed K times (``benchmarks/run.py --repeat K``).

One timing of a configuration is one draw: on a shared machine the same code measured twice gives overheads a few
hundredths apart (MoPoE at N = 3: 1.054 in one run, 1.10 in another), so a target judged on one draw passes or
fails by luck. With K repeats each ratio is reported as its median and its range (min–max) over the repeats,
beside the CPU and wall time per step and the load average at the start of each repeat, and the targets are
judged on the range's worse end: a target holds only if every repeat met it.

Standard library only, as the rest of the harness's driver.
"""
from __future__ import annotations

import statistics

#: the ratios of a training row (run.train_row) whose spread is reported; True: lower is better
RATIOS = {"overhead": True, "overhead_wall": True, "peer_overhead": True, "speedup": False, "speedup_wall": False}
#: per-step times of a row, as (engine, field)
TIMES = {"modkit_cpu_ms": ("modkit", "cpu_ms"), "modkit_wall_ms": ("modkit", "wall_ms"),
         "floor_cpu_ms": ("modkit", ("floor", "cpu_ms")), "multivae_cpu_ms": ("multivae", "cpu_ms"),
         "multivae_wall_ms": ("multivae", "wall_ms")}


def summary(values: list) -> dict | None:
    """Median, min, max and count of the known values (None when none is known)."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return None
    return {"median": round(statistics.median(known), 3), "min": round(min(known), 3), "max": round(max(known), 3),
            "n": len(known)}


def _time(row: dict, engine: str, field) -> float | None:
    res = row.get(engine) or {}
    if isinstance(field, tuple):
        res, field = res.get(field[0]) or {}, field[1]
    return res.get(field)


def combine(rows: list[dict]) -> dict:
    """One configuration's rows, one per repeat → the row the tables show, with ``spread`` and ``repeats`` added.

    The row shown is the repeat with the median modkit overhead (the lower middle one for an even K), so its
    step times and ratios are one real measurement; ``spread`` gives each ratio's and time's median and range
    over every repeat, and ``load`` the load average at each repeat's start. A single row is returned as it is."""
    if len(rows) == 1:
        return rows[0]
    timed = sorted((r for r in rows if r.get("overhead") is not None), key=lambda r: r["overhead"])
    shown = timed[(len(timed) - 1) // 2] if timed else rows[0]
    spread = {name: summary([r.get(name) for r in rows]) for name in RATIOS}
    spread.update({name: summary([_time(r, *where) for r in rows]) for name, where in TIMES.items()})
    spread["load"] = [r.get("load") for r in rows]
    spread["repeats"] = len(rows)
    return {**shown, "spread": spread, "repeats": rows}


def worst(row: dict, name: str) -> float | None:
    """The ratio a target is judged on: the worse end of its range over the repeats, or the one measurement."""
    cell = (row.get("spread") or {}).get(name)
    if cell is None:
        return row.get(name)
    return cell["max"] if RATIOS[name] else cell["min"]


def cell(summary_: dict | None, spec: str = ".3f") -> str:
    if not summary_:
        return "–"
    return f"{summary_['median']:{spec}} ({summary_['min']:{spec}}–{summary_['max']:{spec}})"


def markdown(rows: list[dict], labels: dict[str, str]) -> list[str]:
    """The section listing every repeated configuration's spread (nothing when no row was repeated)."""
    repeated = [r for r in rows if r.get("spread")]
    if not repeated:
        return []
    k = max(r["spread"]["repeats"] for r in repeated)
    lines = ["", f"## Spread over {k} repeats (median (min–max))", "",
             "Each configuration was timed K times, the repeats interleaved (every configuration once, then again); a "
             "row of the table above is the repeat with the median overhead. Targets are judged on the worse end of "
             "each range.", "",
             "| objective | N | overhead (CPU) | overhead (wall) | speed-up over MultiVae (CPU) | MultiVae / floor | "
             "modkit CPU ms | modkit wall ms | floor CPU ms | load at each repeat |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in repeated:
        s = row["spread"]
        name = labels.get(row['objective'], row['objective']) + (" (before)" if row.get("variant") == "before" else "")
        lines.append(f"| {name} | {row['n']} | {cell(s['overhead'])} | "
                     f"{cell(s['overhead_wall'])} | {cell(s['speedup'], '.2f')} | {cell(s['peer_overhead'], '.2f')} | "
                     f"{cell(s['modkit_cpu_ms'], '.1f')} | {cell(s['modkit_wall_ms'], '.1f')} | {cell(s['floor_cpu_ms'], '.1f')} | "
                     f"{'; '.join(str(v) for v in s['load'])} |")
    return lines
