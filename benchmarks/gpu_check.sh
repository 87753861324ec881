#!/usr/bin/env bash
# The GPU check in one command: bash benchmarks/gpu_check.sh OUT [--device cuda|cpu] [--tiny]
#
# Runs the CUDA tests, two real trainings, the MLP benchmark with and without bf16 + compile, and MoPoE against
# MultiVae 1.0.3, each step with its own timeout; a failing step is recorded in OUT/summary.json, not fatal.
# About 8 minutes on an H100. `--device cpu --tiny` is the same at toy sizes on the CPU (a dry run, ~1 minute).
# PYTHON picks the interpreter (default: python3, then python); it must import modkit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$python" "$here/gpu_check.py" "$@"
