"""Hostile files the tests plant in otherwise valid datasets: images whose header declares a
huge size (decompression bombs), and label pixels set to ids outside the label set."""
from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_SIDE = 30000  # 900 megapixels declared: a few hundred bytes on disk


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, width: int = BOMB_SIDE, height: int = BOMB_SIDE, mode: str = "RGB") -> Path:
    """A PNG whose IHDR declares width x height 8-bit pixels; its IDAT holds a few rows only
    (the readers must refuse it from the header, so the pixel data is never reached)."""
    colour_type = {"L": 0, "RGB": 2, "P": 3}[mode]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if mode == "P":
        chunks.append(_png_chunk(b"PLTE", bytes(range(256)) * 3))
    row = b"\0" * (1 + width * (3 if mode == "RGB" else 1))
    chunks += [_png_chunk(b"IDAT", zlib.compress(row * 4, 9)), _png_chunk(b"IEND", b"")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunks))
    return path


def write_jpeg_bomb(path: Path, width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> Path:
    """A small valid JPEG whose SOF0 frame header is patched to declare width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buffer, format="JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def set_label_pixels(path: Path, value: int, rows: slice = slice(0, 2), cols: slice = slice(0, 3)) -> int:
    """Overwrite a block of a palette/grey label with `value`, keeping mode and palette;
    returns how many pixels now hold it."""
    with Image.open(path) as image:
        mode, palette = image.mode, image.getpalette()
        label = np.array(image)
    label[rows, cols] = value
    out = Image.fromarray(label)
    if mode == "P":
        out.putpalette(palette)  # an L image given a palette becomes P, indices kept
    out.save(path, format="PNG")
    return int((label == value).sum())


def write_pack_datasets(root: Path, count: int, cityscapes_hw: tuple[int, int], seed: int) -> dict[str, Path]:
    """Small synthetic Cityscapes, VOC and COCO trees (odd sizes) under `root`, by short name."""
    from common.data.synth.cityscapes import write_synthetic_cityscapes
    from common.data.synth.coco import write_synthetic_coco
    from common.data.synth.voc import write_synthetic_voc
    write_synthetic_cityscapes(root / "cs", count=count, size_hw=cityscapes_hw, seed=seed)
    write_synthetic_voc(root / "voc", count=count, seed=seed, sizes_hw=((24, 32), (17, 31)))
    write_synthetic_coco(root / "coco", count=count, seed=seed, sizes_hw=((40, 56), (48, 30)))
    return {"cs": root / "cs", "voc": root / "voc", "coco": root / "coco"}


def copy_datasets(pristine: dict[str, Path], parent: Path) -> dict[str, Path]:
    """A private copy of each dataset, for a test that breaks it."""
    return {name: Path(shutil.copytree(path, parent / name)) for name, path in pristine.items()}
