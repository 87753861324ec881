"""Dataset readers bound what a small file may make them allocate: a declared size checked before it is
inflated or decoded (MNIST's gzip, COCO's image sizes, a VOC mask's PNG header), one DataError each."""
from __future__ import annotations

import gzip
import resource
import struct
import zlib

import numpy as np
import pytest

from modkit.errors import DataError


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_mnist_gzip_is_inflated_no_further_than_its_header_declares(tmp_path):
    from modkit_mnist import read_idx

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:  # declares 10 images, then holds 300 MB of zeros
        handle.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 10, 28, 28))
        block = bytes(2**20)
        for _ in range(300):
            handle.write(block)
    assert path.stat().st_size < 2_000_000
    before = _peak()
    with pytest.raises(DataError, match=r"header says shape \(10, 28, 28\) .* file has more"):
        read_idx(path)
    assert _peak() - before < 100_000  # KiB: nothing past the declared 7840 bytes was inflated


def test_mnist_header_declaring_gigabytes_is_refused_from_the_header(tmp_path):
    from modkit_mnist import read_idx

    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">III", 100_000, 1000, 1000)))
    with pytest.raises(DataError, match="declares shape .* more than"):
        read_idx(path)


def test_a_real_idx_file_still_reads(tmp_path):
    from modkit_mnist import read_idx

    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 4) + data.tobytes()))
    np.testing.assert_array_equal(read_idx(path), data)


def test_coco_refuses_an_image_size_it_cannot_hold(tmp_path):
    from modkit_coco import MaskPainter

    annotations = {"images": [{"id": 1, "height": 60000, "width": 60000, "file_name": "a.jpg"}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]}],
                   "categories": [{"id": 1, "name": "thing"}]}
    painter = MaskPainter(tmp_path / "instances_val.json", annotations, None)
    before = _peak()
    with pytest.raises(DataError, match="60000 × 60000 pixels"):
        painter(annotations["images"][0])
    assert _peak() - before < 100_000


def png_claiming(path, width: int, height: int) -> None:
    """A palette PNG whose header claims ``width`` × ``height`` (its data stream holds one row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", bytes(3)) +
                     chunk(b"IDAT", zlib.compress(bytes(width + 1))) + chunk(b"IEND", b""))


def test_a_voc_mask_bomb_is_refused_from_its_header(tmp_path):
    from modkit_voc import check_mask

    path = tmp_path / "bomb.png"
    png_claiming(path, 100_000, 100_000)  # 10 gigapixels declared in 100 bytes
    before = _peak()
    with pytest.raises(DataError, match="bomb.png"):
        check_mask(str(path))
    assert _peak() - before < 100_000
