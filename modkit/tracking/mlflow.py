"""MLflow tracking: params (the resolved recipe), metrics per interval and epoch, the run directory as artifacts.

``tracking.mlflow: true`` uses ``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``mlflow.db`` in the
project's runs directory; any other value is an MLflow tracking URI (``sqlite:///…``, ``postgresql://…``,
``http://host:5000``) or a folder, which gets a SQLite store ``mlflow.db`` inside it (MLflow 3 refuses a
folder as a file store). A password in the URI is never written into the run directory: recipe.yaml keeps
``user:***@`` and a resumed run takes it from MLFLOW_TRACKING_PASSWORD.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

STORE = "mlflow.db"
ARTIFACTS = "mlartifacts"
_SKIP = (".tmp", ".new")  # half-written files of the atomic writer


def tracking_uri(value: Any) -> str:
    """The store a ``tracking.mlflow`` value names (see the module docstring)."""
    if value is True:
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        from modkit.config.project import load_project

        return f"sqlite:///{(load_project().runs_dir / STORE).resolve()}"
    text = str(value)
    if "://" not in text and re.match(r"[^/@]+:[^/]*@", text):
        from modkit.errors import redact

        raise ValueError(f"'{redact(text)}' has no scheme: write it as postgresql://…, mysql://… or http(s)://…")
    if "://" not in text and not text.startswith("file:"):
        # a folder: a SQLite store inside it (MLflow 3 no longer takes a folder as a file store)
        folder = Path(text).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / STORE}"
    return text


def metric_name(key: str) -> str:
    """MLflow names allow letters, digits and ``_-. :/`` only: ``coherence/image->label`` → ``coherence/image-to-label``."""
    return re.sub(r"[^\w\-. :/]", "_", key.replace("->", "-to-").replace("+", "_and_"))


def masked(uri: str) -> str:
    """The URI without its password (what may be printed or written into a run directory); a scheme-less
    ``user:password@host`` too."""
    from modkit.errors import redact

    return redact(uri)


PASSWORD_ENV, USERNAME_ENV = "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME"


def with_credentials(uri: str) -> str:
    """The URI to connect with. A run's recipe.yaml keeps its tracking URI masked (``user:***@``), so the password
    comes from MLflow's own variables: an HTTP server gets them as MLFLOW_TRACKING_USERNAME/PASSWORD (MLflow's
    basic auth) and a URI without them; a database URI gets the password back from MLFLOW_TRACKING_PASSWORD."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    if parts.scheme in ("http", "https"):
        if parts.password != "***":
            os.environ.setdefault(USERNAME_ENV, parts.username or "")
            os.environ.setdefault(PASSWORD_ENV, parts.password)
        elif not os.environ.get(PASSWORD_ENV):
            raise RuntimeError(f"the tracking password is not stored in the run; set {PASSWORD_ENV} (and {USERNAME_ENV})")
        return urlunsplit(parts._replace(netloc=host))
    if parts.password == "***":
        if not os.environ.get(PASSWORD_ENV):
            raise RuntimeError(f"the tracking password is not stored in the run; set {PASSWORD_ENV}")
        return urlunsplit(parts._replace(netloc=f"{parts.username}:{quote(os.environ[PASSWORD_ENV], safe='')}@{host}"))
    return uri


def _artifact_root(uri: str) -> str | None:
    """A database store keeps artifacts beside the SQLite file, or in RUNS_DIR/mlartifacts (MLflow's
    own default is ./mlruns of whatever the working directory is)."""
    scheme = urlsplit(uri).scheme
    if scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath(ARTIFACTS).as_uri()
    if scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        from modkit.config.project import load_project

        return (load_project().runs_dir / ARTIFACTS).resolve().as_uri()
    return None


def probe(uri: str) -> None:
    """Connect once to a database store with a 10 s timeout: MLflow itself retries a database that is down
    for about 100 s (ten attempts, exponential back-off) before it gives up, and the run would wait."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme not in ("postgresql", "mysql"):
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10})
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


class MlflowBackend:
    """One MLflow run per modkit run (continued, not duplicated, when the run is resumed)."""

    name = "mlflow"

    def __init__(self, uri: str, experiment: str, run_dir: Path, params: dict[str, Any], run_id: str | None = None):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a server that is down: fail in seconds, not minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Param
        except ImportError:
            raise RuntimeError("mlflow is not installed: pip install 'modkit[tracking]'") from None

        uri = with_credentials(uri)
        probe(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_dir = run_dir
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment, artifact_location=_artifact_root(uri))
            parent = run_dir.parent.name  # a sweep's trial-0003/seed-1 keeps its trial in the name
            name = f"{parent}/{run_dir.name}" if parent.startswith("trial-") else run_dir.name
            run = self.client.create_run(experiment_id, run_name=name,
                                         tags={"modkit.run_dir": str(run_dir.resolve())})
            run_id = run.info.run_id
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=items[i : i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        metrics = [Metric(metric_name(k), float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def image(self, tag: str, path: Path, step: int) -> None:
        """The run directory goes up whole in :meth:`final`; nothing extra here."""

    def text(self, tag: str, text: str, step: int) -> None:
        """As :meth:`image`: samples.md is one of the run directory's artifacts."""

    def final(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        self.scalars({f"final/{k}": v for k, v in metrics.items()}, step)
        for path in sorted(self.run_dir.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and not path.name.endswith(_SKIP):
                folder = path.parent.relative_to(self.run_dir).as_posix()
                self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)
