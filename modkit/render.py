"""``samples.png``: test items next to their joint reconstruction and their cross-modal generations."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from modkit.batch import Batch  # noqa: E402
from modkit.engine import MultimodalVAE  # noqa: E402
from modkit.rundir import atomic_write_bytes  # noqa: E402


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


def save_samples_png(model: MultimodalVAE, batch: Batch, path: Path) -> None:
    batch = batch.to(model.device)
    columns, rows = sample_grid(model, batch)
    names = model.names
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.6 * len(columns), 1.2 * len(rows)), squeeze=False)
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if isinstance(cell, str):
                ax.text(0.5, 0.5, cell, ha="center", va="center", fontsize=8, wrap=True)
                for spine in ax.spines.values():
                    spine.set_visible(False)
            else:
                ax.imshow(np.clip(cell, 0, 1), interpolation="nearest")
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"#{r // len(names)} {names[r % len(names)]}", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
