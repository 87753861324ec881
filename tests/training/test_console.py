"""The training console explains itself: the thread count once, what the epoch line's loss sums, a short done line."""
from __future__ import annotations

from click.testing import CliRunner

from modkit.cli.main import main


def test_the_console_says_what_its_numbers_are(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny_recipe), "--out", str(out), "--set", "train.device=cpu",
                                       "--set", "train.progress=false"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum(line.startswith("threads: ") for line in lines) == 1
    legend = [line for line in lines if line.startswith("(epoch lines:")]
    assert len(legend) == 1 and "summed over the subsets the 'mvae' sampler draws" in legend[0] and "test/elbo" in legend[0]
    done = [line for line in lines if line.startswith("done: ")]
    assert len(done) == 1 and "test/elbo" in done[0] and str(out / "summary.json") in done[0] and len(done[0]) < 200
