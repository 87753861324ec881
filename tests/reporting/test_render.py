"""samples.md from a sample grid: text modalities only, pipes escaped, nothing when no modality is text."""
import numpy as np

from modkit.reporting.samples import samples_markdown


def test_text_rows_become_tables_with_escaped_pipes():
    picture = np.zeros((2, 2, 3))
    columns = ["data", "from all"]
    rows = [[picture, picture], ["a | b", "two\nlines"]]  # one item: modality "image", then "caption"
    text = samples_markdown(columns, rows, ["image", "caption"])
    assert "| modality | data | from all |" in text
    assert "| caption | a \\| b | two lines |" in text
    assert "| image |" not in text


def test_no_text_modality_gives_none():
    picture = np.zeros((2, 2, 3))
    assert samples_markdown(["data"], [[picture], [picture]], ["a", "b"]) is None
