"""``samples.png``: test items next to their joint reconstruction and their cross-modal generations."""
from __future__ import annotations

from pathlib import Path

import torch

from modkit.core.batch import Batch
from modkit.core.engine import MultimodalVAE


def _one(data, i: int):
    return {k: v[i] for k, v in data.items()} if isinstance(data, dict) else data[i]


@torch.no_grad()
def sample_grid(model: MultimodalVAE, batch: Batch) -> tuple[list[str], list[list[list[object]]]]:
    """Columns: the data, from all modalities, from each modality alone. Cells: rendered samples per modality."""
    model.eval()
    names = model.names
    sources = [("data", None), ("from all", torch.ones(1, len(names), dtype=torch.bool))]
    sources += [(f"from {n}", torch.eye(len(names), dtype=torch.bool)[i : i + 1]) for i, n in enumerate(names)]
    columns, predictions = [], []
    for title, mask in sources:
        columns.append(title)
        if mask is None:
            predictions.append(batch.data)
        else:
            z = model.posterior(batch, mask.to(model.device)).mean[0]
            predictions.append(model.predict(z))
    rows = []
    for i in range(len(batch)):
        for name in names:
            rows.append([model.modalities[name].render(_one(p[name], i)) for p in predictions])
    return columns, rows


def write_samples(model: MultimodalVAE, batch: Batch, png: Path, md: Path) -> None:
    """``samples.png`` (every modality) and, when some modality renders as text, ``samples.md``,
    both from one pass of :func:`sample_grid`."""
    from modkit.reporting.figures import grid
    from modkit.storage.files import atomic_write_text

    columns, rows = sample_grid(model, batch.to(model.device))
    names = model.names
    n = len(names)
    items = []
    for i in range(len(batch)):
        per_modality = rows[i * n : (i + 1) * n]  # rows[i*n + k][c]: modality k of item i from source c
        items += [[per_modality[k][c] for k in range(n)] for c in range(len(columns))]
    grid(items, png, columns=len(columns), column_titles=columns, title=" / ".join(names))
    text = samples_markdown(columns, rows, names)
    if text is not None:
        atomic_write_text(md, text)


def samples_markdown(columns: list[str], rows: list[list[object]], names: list[str]) -> str | None:
    """The text-rendered modalities of a :func:`sample_grid` as Markdown tables; None if there are none."""
    n = len(names)
    lines = ["# Samples", "", f"Columns: {', '.join(columns)}.", ""]
    found = False
    for i in range(len(rows) // n):
        text_rows = [(name, rows[i * n + k]) for k, name in enumerate(names) if isinstance(rows[i * n + k][0], str)]
        if not text_rows:
            continue
        found = True
        lines += [f"## test item {i}", "", "| modality | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name, cells in text_rows:
            lines.append(f"| {name} | " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines) if found else None
