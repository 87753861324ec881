"""Write docs/benchmarks.md from benchmarks/doc_template.md and the files the benchmarks wrote.

    python benchmarks/make_docs.py

Each ``<!-- results: NAME -->`` line of the template becomes the tables of one result file, rendered by
the benchmark that wrote it (its own markdown function on its JSON), so every number on the page comes
from a file a command wrote, with that file's date, commit, machine, command and load. A missing file
becomes a line saying which command writes it.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_common import portable  # noqa: E402 - after the path insert above

RESULTS = HERE / "results"


def _threads() -> tuple[Path, str]:
    import threads

    path = RESULTS / "threads.json"
    report = json.loads(path.read_text())
    report["targets"] = threads.targets(report["runs"])
    return path, threads.markdown(report)


def _operators() -> tuple[Path, str]:
    import threads

    path = RESULTS / "threads-operators.json"
    return path, threads.operators_markdown(json.loads(path.read_text()))


def _texts(*names: str) -> tuple[Path, str]:
    """Text files a command wrote (each headed by its command, date and commit), shown as they are."""
    paths = [RESULTS / name for name in names]
    blocks = [f"`{path.relative_to(ROOT)}`:\n\n```\n{portable(path.read_text().strip())}\n```" for path in paths]
    return paths[0], "# files\n" + "\n\n".join(blocks)


def _eval() -> tuple[Path, str]:
    import eval_shapes

    path = RESULTS / "eval-shapes.json"
    return path, eval_shapes.markdown(json.loads(path.read_text()))


def _caption_cache() -> tuple[Path, str]:
    import caption_cache

    path = RESULTS / "caption-cache.json"
    return path, caption_cache.markdown(json.loads(path.read_text()))


def _api_threads() -> tuple[Path, str]:
    import api_threads

    path = RESULTS / "api-threads.json"
    return path, api_threads.markdown(json.loads(path.read_text()))


def _gpu() -> tuple[Path, str]:
    import gpu_check

    path = RESULTS / "gpu" / "summary.json"
    return path, gpu_check.markdown(json.loads(path.read_text()))


def _mnist_svhn() -> tuple[Path, str]:
    import bench_mnist_svhn

    path = RESULTS / "mnist-svhn-load.json"
    return path, bench_mnist_svhn.markdown(json.loads(path.read_text()))


def _run(path: Path) -> tuple[Path, str]:
    import run

    return path, run.markdown(json.loads(path.read_text()))


def _run_section(folder: str, options: str):
    """A section of ``run.py``'s results: (its renderer, the command that writes ``results/<folder>/results.json``)."""
    out = f" --out benchmarks/results/{folder}" if folder else ""
    return (lambda: _run(RESULTS / folder / "results.json"), f"python benchmarks/run.py {options}{out}".strip())


#: placeholder → (renderer, the command that writes its file)
SECTIONS = {
    "threads": (_threads, "python benchmarks/threads.py"),
    "api-threads": (_api_threads, "python benchmarks/api_threads.py"),
    "eval-shapes": (_eval, "python benchmarks/eval_shapes.py"),
    "caption-cache": (_caption_cache, "python benchmarks/caption_cache.py"),
    "mnist-svhn-load": (_mnist_svhn, "python benchmarks/bench_mnist_svhn.py"),
    "recipes": _run_section("recipes", '--objectives "" --no-nll --no-scaling --no-peer'),
    "mlp": _run_section("", ""),
    "mlp-all-present": _run_section("all-present", '--objectives mvae,mopoe --no-nll --no-scaling --no-peer --recipes "" '
                                                   '--before REV'),
    "mlp-spread": _run_section("spread", '--n 3,8 --objectives mvae,mopoe --repeat 3 --no-nll --no-scaling --recipes ""'),
    "mlp-spread-sampled": _run_section("spread-sampled", '--n 3,8 --objectives mopoe --mopoe-kl sampled --repeat 3 --no-peer '
                                                         '--no-nll --no-scaling --recipes ""'),
    "mopoe-kl-cost": (lambda: _texts("mopoe-kl-cost-n8.txt", "mopoe-kl-cost-n5.txt"),
                      "python benchmarks/mopoe_kl_cost.py --n N --out benchmarks/results/mopoe-kl-cost-nN.txt"),
    "models": _run_section("models", '--n 2,3,5 --objectives jmvae,mvtcae,dmvae,mmvae_plus,cvae,telbo,jnf,nexus,mhvae,'
                                     'cmvae,crmvae --repeat 3 --no-nll --no-scaling --recipes ""'),
    "models-same-joint": _run_section("models-same-joint", '--n 2,3,5 --objectives jmvae,telbo,jnf --peer-joint modkit '
                                                           '--repeat 3 --no-nll --no-scaling --recipes ""'),
    "gpu": (_gpu, "bash benchmarks/gpu_check.sh benchmarks/results/gpu"),
    "threads-operators": (_operators, "python benchmarks/threads.py --operators"),
    "op-counts": (lambda: _texts(*(f"op-count-mopoe-n{n}-{code}.txt" for n in (2, 8) for code in ("before", "current"))),
                  "python benchmarks/profile_step.py mopoe --n N --count-ops --out benchmarks/results/op-count-mopoe-nN-CODE.txt"),
}


#: what a section says while its file is missing, where "not measured yet" would undersell it
MISSING = {"gpu": "No card has run the GPU check yet: nothing on this page was measured on a GPU. `{command}` "
                  "writes `{path}` (then run `python benchmarks/make_docs.py`).\n"}


def section(name: str) -> str:
    render, command = SECTIONS[name]
    try:
        path, text = render()
    except FileNotFoundError as exc:
        missing = Path(exc.filename).relative_to(ROOT)
        if name in MISSING:
            return MISSING[name].format(command=command, path=missing)
        return f"Not measured yet: `{command}` writes `{missing}`.\n"
    lines = text.strip().splitlines()[1:]  # the file's own title: the page has its heading
    if text.startswith("# files"):  # verbatim text files: their own '#' header lines stay as they are
        return "\n".join(lines).strip() + "\n"
    body = "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
    return f"From `{path.relative_to(ROOT)}`:\n\n{body}\n"


def main() -> int:
    template = (HERE / "doc_template.md").read_text()
    page = re.sub(r"<!-- results: ([\w-]+) -->", lambda m: section(m.group(1)).rstrip("\n"), template)
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text(page)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
