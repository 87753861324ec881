"""The PNG figures of ``modkit report``, ``sample``, ``generate`` and ``sweep`` (matplotlib, Agg, atomic writes)."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from modkit.storage.files import atomic_write_bytes  # noqa: E402


def save(fig, path: Path, dpi: int = 90) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def _as_rgb(value) -> np.ndarray:
    a = np.clip(np.asarray(value, dtype=np.float32), 0, 1)
    return np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a[..., :3]


TEXT_LINE = 9  # pixels per line of 6-point text at 100 dpi
MAX_LINES = 4


def _wrap(text: str, width_px: int) -> list[str]:
    """Wrap to the cell (about 4 px per character at 6 pt), at most MAX_LINES lines, the last ending in … if cut."""
    import textwrap

    lines = textwrap.wrap(text, max(8, width_px // 4)) or [""]
    return lines if len(lines) <= MAX_LINES else lines[: MAX_LINES - 1] + [lines[MAX_LINES - 1][:-1] + "…"]


def grid(items: Sequence[Sequence[object]], path: Path, row_names: Sequence[str] = (), columns: int = 8, title: str | None = None,
         column_titles: Sequence[str] = (), cell: int = 64) -> Path:
    """``items[i]`` holds one sample's renders, one per modality (RGB arrays or strings); samples fill a grid.

    Images are pasted (nearest-neighbour upscaled) into one canvas and strings drawn on it, so a
    grid of hundreds of cells is one ``imshow``: fast, whatever the number of samples.
    """
    n, m = len(items), max(len(i) for i in items)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    pad = 6
    bands, factors = [], []
    for k in range(m):
        arrays = [it[k] for it in items if k < len(it) and not isinstance(it[k], str)]
        if arrays:
            h = max(np.asarray(a).shape[0] for a in arrays)
            w = max(np.asarray(a).shape[1] for a in arrays)
            f = max(1, cell // max(h, w))
            bands.append((h * f, w * f))
            factors.append(f)
        else:
            texts_k = [it[k] for it in items if k < len(it) and isinstance(it[k], str)]
            lines = max([len(_wrap(t, 2 * cell)) for t in texts_k] + [1])
            bands.append((TEXT_LINE * lines + 4, 2 * cell))  # long strings: a wider cell, wrapped, at most MAX_LINES
            factors.append(1)
    width = max(w for _, w in bands)
    block_h = sum(h for h, _ in bands) + pad * m
    canvas = np.ones((rows * block_h + pad, cols * (width + pad) + pad, 3), dtype=np.float32)
    texts = []
    for i, renders in enumerate(items):
        r, c = divmod(i, cols)
        y = r * block_h + pad
        x0 = c * (width + pad) + pad
        for k, value in enumerate(renders):
            h, w = bands[k]
            if isinstance(value, str):
                texts.append((x0 + width / 2, y + h / 2, "\n".join(_wrap(value, width))))
            else:
                img = _as_rgb(value)
                img = img.repeat(factors[k], 0).repeat(factors[k], 1)
                x = x0 + (width - img.shape[1]) // 2
                canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
            y += h + pad
    dpi = 100
    fig = plt.figure(figsize=(max(canvas.shape[1], 200) / dpi + (0.8 if row_names else 0), canvas.shape[0] / dpi + (0.4 if title or column_titles else 0.1)))
    ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
    ax.imshow(canvas, interpolation="nearest")
    for x, y, text in texts:
        ax.text(x, y, text, ha="center", va="center", fontsize=6, linespacing=1.0)
    ax.set_xticks([(c + 0.5) * (width + pad) + pad / 2 for c in range(len(column_titles))], list(column_titles), fontsize=7)
    ax.xaxis.tick_top()
    if row_names:
        centres, y = [], pad
        for h, _ in bands:
            centres.append(y + h / 2)
            y += h + pad
        ax.set_yticks(centres, list(row_names)[:m], fontsize=7)
    else:
        ax.set_yticks([])
    if not column_titles:
        ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9, pad=14 if column_titles else 4)
    return save(fig, path)


def loss_curves(rows: list[dict], path: Path) -> Path | None:
    keys = sorted({k for r in rows for k in r if k.startswith("train/")}, key=lambda k: (k.count("/"), k))
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.6 * nrows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, key in zip(axes.flat, keys):
        ax.plot(epochs, [r.get(key, np.nan) for r in rows], lw=1.5)
        ax.set_title(key.removeprefix("train/"), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)


def table_heatmap(row_labels: list[str], col_labels: list[str], values: np.ndarray, path: Path, title: str,
                  vmin: float = 0.0, vmax: float = 1.0) -> Path:
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(col_labels), 0.8 + 0.45 * len(row_labels)))
    im = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < (vmin + vmax) / 2 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save(fig, path)


def histogram(hist: dict, path: Path, title: str) -> Path:
    edges = np.asarray(hist["edges"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(centers, hist["paired"], width=width, alpha=0.6, label="paired (same item)")
    ax.bar(centers, hist["unpaired"], width=width, alpha=0.6, label="unpaired (random other item)")
    ax.set_xlabel("2-Wasserstein distance between unimodal posteriors", fontsize=8)
    ax.set_ylabel("items", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def distance_matrix(classes: list, matrix: list[list[float]], path: Path, title: str, class_names: list[str] | None = None) -> Path:
    """Class × class mean W2 with a dendrogram of the classes (average linkage on the symmetrised matrix)."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(matrix)
    names = class_names or [str(c) for c in classes]
    sym = (m + m.T) / 2
    np.fill_diagonal(sym, 0.0)
    order = list(range(len(names)))
    fig = plt.figure(figsize=(1.5 + 0.45 * len(names), 1.8 + 0.45 * len(names)))
    if len(names) > 2:
        ax_d = fig.add_axes([0.15, 0.78, 0.65, 0.17])
        tree = dendrogram(linkage(squareform(np.clip(sym, 0, None), checks=False), "average"), ax=ax_d, no_labels=True,
                          color_threshold=0, above_threshold_color="k")
        order = tree["leaves"]
        ax_d.axis("off")
    ax = fig.add_axes([0.15, 0.1, 0.65, 0.65])
    shown = m[np.ix_(order, order)]
    im = ax.imshow(shown, cmap="magma_r", aspect="auto")
    ticks = [names[i] for i in order]
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_xlabel("class (second modality)", fontsize=8)
    ax.set_ylabel("class (first modality)", fontsize=8)
    fig.colorbar(im, cax=fig.add_axes([0.83, 0.1, 0.03, 0.65]))
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def sweep_plot(key: str, xs: list, series: dict[str, list[float | None]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    positions = xs if numeric else list(range(len(xs)))
    for name, ys in series.items():
        ax.plot(positions, [np.nan if y is None else y for y in ys], marker="o", label=name)
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(positions, [str(x) for x in xs])
    ax.set_xlabel(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
