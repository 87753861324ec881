"""Helpers for the run-directory tests: a tiny recipe, the CLI in this process, one-line errors, payloads."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from click.testing import CliRunner

from modkit.cli.main import main
from tiny_recipes import CPU, SMALLER, tiny_recipe_dict

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this writes a marker file: what a malicious run directory would do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def payload_bytes(marker: Path, torch_zip: bool) -> bytes:
    if not torch_zip:
        return pickle.dumps(Payload(marker))
    import io

    buffer = io.BytesIO()
    torch.save({"model": Payload(marker)}, buffer)  # what torch.load(weights_only=False) would run
    return buffer.getvalue()


def tiny_raw() -> dict:
    return tiny_recipe_dict(*SMALLER, *CPU)


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


COMMANDS = {
    "sample": lambda run: ["sample", run, "-n", "2", "--device", "cpu"],
    "generate": lambda run: ["generate", run, "--target", "image", "--given", "label=3", "-n", "2", "--device", "cpu"],
    "eval": lambda run: ["eval", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu"],
    # coherence is scored by the dataset's fixed judges; a run's judges.safetensors is read when named
    "eval --judges": lambda run: ["eval", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu",
                                  "--judges", run / "judges.safetensors"],
    "report": lambda run: ["report", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu"],
    "resume": lambda run: ["train", "--resume", run, "--set", "train.epochs=2"],
}
