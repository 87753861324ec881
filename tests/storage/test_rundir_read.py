"""Run-directory JSON files that are missing or corrupt are ModkitErrors naming the file, not tracebacks."""
from __future__ import annotations

import pytest

from modkit.storage import files as rundir
from modkit.errors import ModkitError


def test_read_json_names_a_corrupt_file(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"summary": {')
    with pytest.raises(ModkitError, match="eval.json is not valid JSON"):
        rundir.read_json(path)
    with pytest.raises(ModkitError, match="cannot read .*missing.json"):
        rundir.read_json(tmp_path / "missing.json")
    path.write_text('{"a": 1}')
    assert rundir.read_json(path) == {"a": 1}


def test_read_metrics_names_the_bad_line(tmp_path):
    (tmp_path / rundir.METRICS_JSONL).write_text('{"epoch": 1}\n{"epoch": \n')
    with pytest.raises(ModkitError, match="line 2"):
        rundir.read_metrics(tmp_path)
