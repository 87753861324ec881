"""The run-folder write check is safe when several processes (sweep workers) make it at once."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from modkit.errors import ModkitError
from modkit.storage.files import ensure_writable


def test_many_checks_of_one_folder_at_once_all_pass_and_leave_nothing(tmp_path):
    folder = tmp_path / "sweep"

    def check(_):
        for _ in range(100):
            ensure_writable(folder)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, range(8)))  # a shared probe name raised "not writable: No such file or directory" here
    assert list(folder.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModkitError, match="is not writable"):
        ensure_writable(tmp_path / "file" / "run")
