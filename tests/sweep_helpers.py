"""Helpers of the tracking and sweep tests: a tiny recipe, free ports, a PostgreSQL server in a temp folder."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
from tiny_recipes import CPU, tiny_sets

TINY = tiny_sets(*CPU)  # each test sets its own train.epochs after these


def postgres_bin() -> Path | None:
    """initdb's folder: PATH first, then Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """``url(db)`` gives a SQLAlchemy URL of a fresh database ``db`` on the server."""

    def __init__(self, port: int):
        self.port = port

    def url(self, database: str) -> str:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}"')
            cursor.execute(f'CREATE DATABASE "{database}"')
        connection.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"



def start_postgres() -> Iterator[Postgres]:
    folder = postgres_bin()
    if folder is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")
    pytest.importorskip("psycopg2")
    root = Path(tempfile.mkdtemp(prefix="modkit-pg-"))
    data = root / "data"
    run_as: dict = {}
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as nobody
        user = pwd.getpwnam("nobody")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    env = {**os.environ, "LC_ALL": "C"}
    log = root / "server.log"
    try:
        subprocess.run([str(folder / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, cwd=root, env=env, **run_as)
        # the port is free when asked for, not reserved: another pytest worker's server may take it first, so a
        # start that fails is retried on a new port
        for attempt in range(3):
            port = free_port()
            started = subprocess.run([str(folder / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
                                      "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"],
                                     capture_output=True, cwd=root, env=env, **run_as)
            if started.returncode == 0:
                break
        started.check_returncode()
        yield Postgres(port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, cwd=root, env=env, **run_as)
        shutil.rmtree(root, ignore_errors=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
