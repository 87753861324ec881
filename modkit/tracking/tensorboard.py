"""TensorBoard event files in the run directory, so ``tensorboard --logdir runs`` shows runs side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class TensorBoardBackend:
    """torch's :class:`SummaryWriter` on the run directory itself (one TensorBoard "run" per modkit run)."""

    name = "tensorboard"

    def __init__(self, run_dir: Path, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run's events after its checkpoint's step replace those the earlier process wrote
        self.writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None, flush_secs=10)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)  # written out every 10 s and at close

    def image(self, tag: str, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def final(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The recipe as hyperparameters, the final metrics as the session's results (TensorBoard's HPARAMS tab).

        Written into this run's own event file (``add_hparams`` would open a sub-run per call)."""
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(params, {f"final/{k}": v for k, v in metrics.items()}):
            self.writer.file_writer.add_summary(summary)
        for key, value in metrics.items():
            self.writer.add_scalar(f"final/{key}", value, step)

    def close(self, status: str) -> None:
        self.writer.close()
