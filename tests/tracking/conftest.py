"""A real PostgreSQL server for the database-backed tracking and sweep tests, started here in a temp
folder on a free localhost port and stopped at the end (skipped, saying why, without the binaries)."""
from __future__ import annotations

import pytest
from sweep_helpers import start_postgres


@pytest.fixture(scope="session")
def postgres():
    yield from start_postgres()
