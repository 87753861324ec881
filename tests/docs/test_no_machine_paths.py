"""No page under docs/ (nor the README) names a folder of the machine that built it: generated stamps give
paths relative to the repository or the run, and sources are cited by title, not by a file on one machine."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MACHINE = re.compile(r"(?<![\w.~:/-])/(?:work|root|tmp|home)/")
TEXT = {".md", ".json", ".ipynb", ".yaml", ".yml", ".txt", ".csv", ".svg", ".html", ".py"}


def pages() -> list[Path]:
    return [ROOT / "README.md", *(p for p in sorted((ROOT / "docs").rglob("*")) if p.suffix in TEXT and p.is_file())]


def test_no_page_names_a_folder_of_the_build_machine():
    found = [f"{p.relative_to(ROOT)}:{n}: {m.group(0)}…" for p in pages()
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) for m in MACHINE.finditer(line)]
    assert not found, "absolute paths of one machine in the docs:\n" + "\n".join(found[:20])


def test_the_scan_finds_what_it_is_for():
    assert MACHINE.search("--out /work/repro-19") and MACHINE.search("(`/tmp/perf/base/modkit`)")
    assert not MACHINE.search("https://download.pytorch.org/whl/cpu") and not MACHINE.search("docs/work/x")


@pytest.mark.parametrize("module", ["reproductions.fusion_tables", "bench_common"])
def test_stamp_writers_make_paths_portable(module, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    portable = __import__(module, fromlist=["portable"]).portable
    command = f"modkit reproduce claim --out /work/repro-19 --recipes {ROOT}/recipes/x.yaml https://example.org/a/b 1/2"
    assert portable(command) == "modkit reproduce claim --out …/repro-19 --recipes recipes/x.yaml https://example.org/a/b 1/2"
    assert portable("modkit imported from /tmp/perf/base/modkit, load 1.0") == "modkit imported from …/modkit, load 1.0"
    assert portable(portable(command)) == portable(command)  # a stamp made portable stays as it is when rendered again
    assert not MACHINE.search(portable(f"figure {ROOT}/docs/figures/a.png")) and sys.modules[module]
