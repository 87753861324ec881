"""A dataset's files not where its plugin looks: the one error line names the manifest route as well."""
from __future__ import annotations

import pytest

from modkit.errors import DataError
from modkit_coco import Coco, CocoConfig
from modkit_parallel import ParallelConfig, ParallelText


@pytest.mark.parametrize("make", [
    lambda root: Coco(CocoConfig(type="coco"), root),
    lambda root: ParallelText(ParallelConfig(type="parallel_text"), root),
], ids=["coco", "parallel_text"])
def test_not_found_names_the_manifest_route(tmp_path, make):
    with pytest.raises(DataError) as caught:
        make(tmp_path / "nowhere").load()
    text = str(caught.value)
    assert "not found" in text or text.startswith("no ")
    assert "manifest" in text and "\n" not in text
