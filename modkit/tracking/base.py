"""The :class:`Tracker` the trainer talks to, fanning out to backends (TensorBoard, MLflow).

A backend that raises (server down, disk full, a bad URI) is reported once as a warning and
dropped: tracking never stops or loses a run. Only rank 0 tracks under DDP.
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

TRACKING_JSON = "tracking.json"  # what a resumed run needs to continue the same MLflow run


class Backend(Protocol):
    """One tracking destination. ``step`` is the global optimizer step throughout."""

    name: str

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, path: Path, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...

    def final(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None: ...

    def close(self, status: str) -> None: ...


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b.c`` keys; lists and None become strings (hparams and MLflow params take scalars)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    key = prefix[:-1]
    if isinstance(tree, (bool, int, float, str)):
        return {key: tree}
    return {key: json.dumps(tree) if isinstance(tree, list) else str(tree)}


def numbers(row: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The finite numeric entries of a metrics row (nested dicts flattened with '/')."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            out.update({f"{key}/{k}" if not k.startswith(f"{key}/") else k: v
                        for k, v in numbers(value).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


class Tracker:
    """Fans the trainer's rows out to the backends; a failing backend is warned about once and dropped."""

    def __init__(self, backends: list[Backend], params: dict[str, Any], run_dir: Path, warn: Callable[[str], None]):
        self.backends, self.params, self.run_dir, self.warn = list(backends), params, run_dir, warn
        self._interval: tuple[int, list[float]] | None = None  # (epoch, Σ terms and seen at the last interval)
        self._closed = False

    @property
    def active(self) -> bool:
        return bool(self.backends)

    def _each(self, call: Callable[[Backend], None]) -> None:
        for backend in list(self.backends):
            try:
                call(backend)
            except Exception as exc:  # noqa: BLE001 - any tracking failure: one warning, the run goes on
                self.backends.remove(backend)
                with contextlib.suppress(Exception):  # e.g. mark the MLflow run FAILED, if its store still answers
                    backend.close("FAILED")
                self.warn(f"warning: {backend.name} tracking failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          f"the run continues without it")

    # -- what the trainer calls ----------------------------------------------------------------
    def log_interval(self, state: Any, lr: float) -> None:
        """Mean of each loss term over the steps since the last interval (one host read of the epoch sums)."""
        if not self.backends:
            return
        keys = sorted(state.sums)
        seen = torch.as_tensor(state.seen, dtype=torch.float64)
        device = state.sums[keys[0]].device if keys else seen.device
        flat = torch.stack([state.sums[k].detach().double() for k in keys] + [seen.to(device)]).tolist()
        previous = self._interval[1] if self._interval and self._interval[0] == state.epoch else None
        if previous is None or len(previous) != len(flat) or flat[-1] < previous[-1]:
            previous = [0.0] * len(flat)  # a new epoch (or a rollback): the sums started again
        self._interval = (state.epoch, flat)
        n = flat[-1] - previous[-1]
        values = {f"step/train/{k}": (flat[i] - previous[i]) / n for i, k in enumerate(keys)} if n > 0 else {}
        values["step/lr"] = float(lr)
        self._each(lambda b: b.scalars(values, state.global_step))

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One metrics.jsonl row, every number in it, at the row's global step."""
        values = numbers(row, skip=("step",))
        self._each(lambda b: b.scalars(values, int(row["step"])))

    def finish(self, summary: dict[str, Any], files: dict[str, Path]) -> None:
        """The sample grid, text samples, the recipe as hyperparameters with the final metrics; then close."""
        step = int(summary.get("steps", 0))
        metrics = numbers(summary, skip=("epochs", "steps", "processes"))
        png, md = files.get("samples_png"), files.get("samples_md")
        if png is not None and png.exists():
            self._each(lambda b: b.image("samples", png, step))
        if md is not None and md.exists():
            text = md.read_text()
            self._each(lambda b: b.text("samples", text, step))
        self._each(lambda b: b.final(self.params, metrics, step))
        self.close("FINISHED")

    def close(self, status: str = "FINISHED") -> None:
        if self._closed:
            return
        self._closed = True
        self._each(lambda b: b.close(status))

    @contextlib.contextmanager
    def failing(self) -> Iterator[None]:
        """Around the training loop: if it raises, the backends are closed (MLflow marks the run KILLED or FAILED)."""
        try:
            yield
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Interrupted"
            self.close("KILLED" if interrupted else "FAILED")
            raise


NULL_TRACKER = Tracker([], {}, Path("."), print)


def _previous(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / TRACKING_JSON).read_text())
    except (OSError, ValueError):
        return {}


def open_tracker(spec: Any, resolved: dict[str, Any], run_dir: Path, start_step: int, main: bool,
                 warn: Callable[[str], None]) -> Tracker:
    """The run's tracker: TensorBoard unless ``tracking.tensorboard: false``, MLflow if ``tracking.mlflow``
    is set. ``start_step`` > 0 on a resumed run: TensorBoard drops the old events after it and MLflow
    continues the same run. Ranks other than 0 get a tracker with no backends."""
    if not main or spec is None:
        return NULL_TRACKER
    params = flatten({k: v for k, v in resolved.items() if k != "tracking"})
    backends: list[Backend] = []

    def add(name: str, make: Callable[[], Backend]) -> None:
        try:
            backends.append(make())
        except Exception as exc:  # noqa: BLE001 - could not even start: one warning
            from modkit.errors import redact

            warn(redact(f"warning: {name} tracking could not start ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); the run continues without it"))

    if getattr(spec, "tensorboard", False):
        from modkit.tracking.tensorboard import TensorBoardBackend

        add("tensorboard", lambda: TensorBoardBackend(run_dir, start_step))
    if getattr(spec, "mlflow", None) not in (None, False):
        from modkit.storage.files import atomic_write_text
        from modkit.tracking.mlflow import MlflowBackend, masked, tracking_uri

        previous = _previous(run_dir) if start_step > 0 else {}

        def make() -> Backend:
            uri = tracking_uri(spec.mlflow)
            same = previous.get("mlflow_uri") == masked(uri)
            backend = MlflowBackend(uri, spec.experiment or resolved.get("name") or "modkit", run_dir, params,
                                    previous.get("mlflow_run_id") if same else None)
            atomic_write_text(run_dir / TRACKING_JSON, json.dumps({"mlflow_uri": masked(uri), "mlflow_run_id": backend.run_id}) + "\n")
            return backend

        add("mlflow", make)
    return Tracker(backends, params, run_dir, warn)
