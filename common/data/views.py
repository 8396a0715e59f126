"""A run's view of a real dataset: the standard layout under the run's own folder, made of links
to the real files, optionally the first N images only, optionally resized copies.

Why: the packs' commands then find every dataset at one place (`<view>/VOCdevkit/VOC2012`,
`<view>/cityscapes`, `<view>/coco`) whatever layout the user's copy has (the guides' own
`data/voc/VOCdevkit/VOC2012`, a bare `VOC2012`, ...), a quick run takes a few real images with
their real labels and lists, and nothing is ever written into the user's dataset.

Resized copies are for quick runs of packs whose model input follows the image size (3D_HRNet
takes whole frames; Wseg pads the image at scale 2): images are resized with area averaging,
labels with nearest neighbour, each saved in its own format and mode (palette labels keep
their palette).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from common.cli import UserError
from common.data.cityscapes import CITYSCAPES_IMAGE_SUFFIX, CITYSCAPES_LABEL_SUFFIX, CityscapesFine
from common.data.coco import load_coco_json
from common.data.images import image_sizes, open_image
from common.data.voc import find_voc2012, read_id_list
from common.files.atomic import atomic_path, write_text_atomic

RESIZE_MODES = ("none", "to_input", "half_input")  # copies at the input size / long side <= input/2


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        link_path.unlink()
    os.symlink(os.path.abspath(target), link_path)


def resized_copy(source: Path, destination: Path, size_wh: tuple[int, int], label: bool) -> None:
    """The file resized to `size_wh`, in its own format and mode (labels: nearest, palette kept)."""
    with open_image(source, "label" if label else "image") as image:
        resized = image.resize(size_wh, resample=Image.NEAREST if label else Image.BOX)
        if image.mode == "P":
            resized.putpalette(image.getpalette())
        file_format = image.format or "PNG"
    # written outside the reader's block: a write error is not the source image's fault
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as tmp:
        resized.save(tmp, format=file_format, **({"quality": 95} if file_format == "JPEG" else {}))


def fitted_size(size_wh: tuple[int, int], input_hw: tuple[int, int], mode: str) -> tuple[int, int] | None:
    """The size a resized copy gets, or None when the file is used as it is."""
    width, height = size_wh
    if mode == "to_input":
        return (input_hw[1], input_hw[0]) if (height, width) != tuple(input_hw) else None
    if mode == "half_input":
        limit = min(input_hw) // 2
        if max(width, height) <= limit:
            return None
        scale = limit / max(width, height)
        return max(1, int(width * scale)), max(1, int(height * scale))
    return None


def place(source: Path, destination: Path, input_hw, mode: str, label: bool) -> None:
    (source_wh,) = image_sizes([source], kind="label" if label else "image")
    size = fitted_size(source_wh, input_hw, mode)
    if size is None:
        link(source, destination)
    else:
        resized_copy(source, destination, size, label)


def voc_view(data_root: Path, out: Path, count: int | None, input_hw, mode: str) -> Path:
    voc = find_voc2012(data_root)
    view = out / "VOCdevkit" / "VOC2012"
    split_file = voc / "ImageSets" / "Segmentation" / "val.txt"
    ids = read_id_list(split_file)
    if count is None and mode == "none":
        link(voc, view)
        return out
    chosen = ids[:count] if count else ids
    for image_id in chosen:
        place(voc / "JPEGImages" / f"{image_id}.jpg", view / "JPEGImages" / f"{image_id}.jpg", input_hw, mode, False)
        place(voc / "SegmentationClass" / f"{image_id}.png", view / "SegmentationClass" / f"{image_id}.png",
              input_hw, mode, True)
    write_text_atomic(view / "ImageSets" / "Segmentation" / "val.txt", "".join(f"{i}\n" for i in chosen))
    return out


def cityscapes_view(data_root: Path, out: Path, count: int | None, input_hw, mode: str) -> Path:
    dataset = CityscapesFine(data_root, "val", require_labels=True)
    view = out / "cityscapes"
    if count is None and mode == "none":
        link(dataset.root, view)
        return out
    for sample in dataset.samples[:count] if count else dataset.samples:
        place(sample.image_path, view / "leftImg8bit" / "val" / sample.city / f"{sample.name}{CITYSCAPES_IMAGE_SUFFIX}",
              input_hw, mode, False)
        place(sample.label_path, view / "gtFine" / "val" / sample.city / f"{sample.name}{CITYSCAPES_LABEL_SUFFIX}",
              input_hw, mode, True)
    return out


def coco_view(data_root: Path, out: Path, count: int | None, input_hw, mode: str) -> Path:
    root = data_root / "coco" if (data_root / "coco" / "val2017").is_dir() else data_root
    annotations = root / "annotations" / "instances_val2017.json"
    view = out / "coco"
    if count is None:
        link(root / "val2017", view / "val2017")
        link(annotations, view / "annotations" / "instances_val2017.json")
        return out
    coco = load_coco_json(annotations)
    image_ids = list(coco.getImgIds())[:count]
    kept = set(image_ids)
    dataset = dict(coco.dataset)
    dataset["images"] = [coco.imgs[i] for i in image_ids]
    dataset["annotations"] = [a for a in coco.dataset["annotations"] if a["image_id"] in kept]
    for info in dataset["images"]:
        link(root / "val2017" / info["file_name"], view / "val2017" / info["file_name"])
    write_text_atomic(view / "annotations" / "instances_val2017.json", json.dumps(dataset))
    return out


VIEWS = {"voc": voc_view, "cityscapes": cityscapes_view, "coco": coco_view}


def make_view(dataset: str, data_root: str | Path, out: str | Path, count: int | None = None,
              input_hw: tuple[int, int] = (0, 0), resize: str = "none") -> Path:
    """The view folder (`out`), holding the dataset in the layout the packs' commands use."""
    data_root, out = Path(data_root), Path(out)
    if not data_root.is_dir():
        raise UserError(f"{data_root}: data folder not found")
    if resize not in RESIZE_MODES:
        raise UserError(f"resize mode {resize!r}: expected one of {', '.join(RESIZE_MODES)}")
    out.mkdir(parents=True, exist_ok=True)
    return VIEWS[dataset](data_root, out, count, input_hw, resize)


