"""VOC sample lists that name image and label files relative to a data root.

1-stage-wseg's `data/val_voc.txt` (and the ModelZoo copy) hold one image per line as two paths
relative to the data root, `voc/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
voc/VOCdevkit/VOC2012/SegmentationClass/<id>.png`. VOC's own `ImageSets/Segmentation/val.txt`
holds bare ids; those are looked up in the VOC2012 folder found below the data root. Either
way every sample gets its id, image path and label path, and samples are matched by id.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import UserError

# Where the VOC2012 folder may sit below the data root, most specific first: the guides'
# `data/voc/VOCdevkit/VOC2012`, a bare `VOCdevkit/VOC2012`, or the VOC2012 folder itself.
VOC2012_CANDIDATES = ("voc/VOCdevkit/VOC2012", "VOCdevkit/VOC2012", "VOC2012", ".")


@dataclass(frozen=True)
class ListedSample:
    image_id: str
    image_path: Path
    label_path: Path


def find_voc2012(data_root: str | Path) -> Path:
    data_root = Path(data_root)
    for candidate in VOC2012_CANDIDATES:
        folder = data_root / candidate
        if (folder / "JPEGImages").is_dir():
            return folder
    raise UserError(f"{data_root}: no VOC2012 folder (with JPEGImages) at "
                    f"{', '.join(VOC2012_CANDIDATES)} below it")


def read_sample_list(data_root: str | Path, list_path: str | Path) -> list[ListedSample]:
    """Samples of a list in either format; ids must be unique."""
    data_root, list_path = Path(data_root), Path(list_path)
    if not list_path.is_file():
        raise UserError(f"{list_path}: file list not found")
    if not data_root.is_dir():
        raise UserError(f"{data_root}: data folder not found")
    samples, seen, voc_root = [], {}, None
    lines = list_path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 2:
            image_path, label_path = data_root / fields[0], data_root / fields[1]
            image_id = Path(fields[0]).stem
        elif len(fields) == 1:
            voc_root = voc_root or find_voc2012(data_root)
            image_id = Path(fields[0]).stem
            image_path = voc_root / "JPEGImages" / f"{image_id}.jpg"
            label_path = voc_root / "SegmentationClass" / f"{image_id}.png"
        else:
            raise UserError(f"{list_path}:{line_no}: expected 'IMAGE LABEL' paths or one id, "
                            f"got {len(fields)} fields")
        if image_id in seen:
            raise UserError(f"{list_path}:{line_no}: id {image_id} repeats line {seen[image_id]}")
        seen[image_id] = line_no
        samples.append(ListedSample(image_id, image_path, label_path))
    if not samples:
        raise UserError(f"{list_path}: no samples listed")
    return samples


def check_exist(samples: list[ListedSample], labels: bool = True) -> None:
    """Fail before any work when a listed image (or label) file is missing."""
    kinds = [("image", "image_path")] + ([("label", "label_path")] if labels else [])
    for kind, attribute in kinds:
        missing = [s for s in samples if not getattr(s, attribute).is_file()]
        if missing:
            raise UserError(f"{getattr(missing[0], attribute)}: {kind} missing ({len(missing)} of "
                            f"{len(samples)} listed, first ids: "
                            f"{', '.join(s.image_id for s in missing[:3])})")
