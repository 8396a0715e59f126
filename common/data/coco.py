"""COCO 2017 instances: the 80 detection classes, category ids, and the annotation reader."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from common.cli import UserError


# ---- COCO 2017 instances ---------------------------------------------------------------------

# mmdet CocoDataset.CLASSES: label i (0..79) is the i-th name, and COCO_CATEGORY_IDS[i] its
# category id in instances_*.json (ascending ids; 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 unused).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
COCO_CATEGORY_TO_LABEL = {cat_id: label for label, cat_id in enumerate(COCO_CATEGORY_IDS)}


class CocoInstances:
    """`<coco_root>/val2017/*.jpg` + `<coco_root>/annotations/instances_val2017.json`.

    Image ids keep the annotation file's order (mmdet's `img_ids`); images are found by the
    json's `file_name`, and `id_by_stem` maps a file stem (the bin names) back to its id.
    Either folder can also be given explicitly (`image_dir`, `annotation_json`).
    """

    def __init__(self, coco_root: str | Path | None = None, split: str = "val2017", *,
                 image_dir: str | Path | None = None, annotation_json: str | Path | None = None):
        root = Path(coco_root) if coco_root is not None else None
        if root is None and annotation_json is None:
            raise UserError("COCO: give the dataset root or the annotation json")
        self.image_dir = Path(image_dir) if image_dir is not None else (root / split if root else None)
        self.annotation_json = (Path(annotation_json) if annotation_json is not None
                                else root / "annotations" / f"instances_{split}.json")
        self.coco = load_coco_json(self.annotation_json)
        self.image_ids = list(self.coco.getImgIds())
        # file names are unique once cut at the first dot (checked by load_coco_json): the bins'
        # and the outputs' names
        self.id_by_stem = {coco_stem(self.coco.imgs[i]["file_name"]): i for i in self.image_ids}

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def image_size_wh(self, image_id: int) -> tuple[int, int]:
        info = self.coco.imgs[image_id]
        return int(info["width"]), int(info["height"])

    def check_files(self) -> None:
        if self.image_dir is None or not self.image_dir.is_dir():
            raise UserError(f"{self.image_dir}: COCO image folder not found")
        missing = [i for i in self.image_ids if not self.image_path(i).is_file()]
        if missing:
            raise UserError(f"{self.image_path(missing[0])}: image missing "
                            f"({len(missing)} of {len(self.image_ids)} images of {self.annotation_json})")

    def require_objects(self, image_ids) -> None:
        """AP needs ground truth: with no non-crowd object in the scored images COCOeval reports
        -1 for every AP (crowd regions are only ignored), which is no score at all."""
        image_ids = list(image_ids)
        if not any(not self.coco.anns[a]["iscrowd"] for a in self.coco.getAnnIds(imgIds=image_ids)):
            raise UserError(f"{self.annotation_json}: the {len(image_ids)} scored image(s) hold no ground-truth "
                            "object (iscrowd 0): AP is undefined")

    def __len__(self) -> int:
        return len(self.image_ids)


def load_coco_json(path: str | Path):
    """pycocotools COCO object of an instances json, quietly; a bad file is a UserError."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: COCO annotation json not found")
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
    check_coco_instances(dataset, path)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def coco_stem(file_name: str) -> str:
    """The sample name of an image file: its name cut at the first dot (the bins' names)."""
    return Path(file_name).name.split(".", 1)[0]


# ---- the structure of an instances file, checked where it is read ------------------------------
# pycocotools and mmdet index these fields without checking them: a missing one is a KeyError
# deep inside COCOeval, a wrong type a crash or, worse, a score computed on something else.

def check_coco_instances(dataset, path: Path) -> None:
    """Refuse, in one line naming the entry and the key, any instances file the evaluation
    would crash on or score wrongly."""
    if not isinstance(dataset, dict):
        raise UserError(f"{path}: not a COCO instances file (a JSON {type(dataset).__name__}, not an object)")
    for key in ("images", "annotations", "categories"):
        if key not in dataset:
            raise UserError(f"{path}: not a COCO instances file (no '{key}' list)")
        if not isinstance(dataset[key], list):
            raise UserError(f"{path}: '{key}' is a {type(dataset[key]).__name__}, expected a list")
    _check_categories(dataset["categories"], path)
    sizes = _check_images(dataset["images"], path)
    _check_annotations(dataset["annotations"], sizes, path)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


_NUMBER_TYPES = frozenset({int, float})


def _all_numbers(values: list) -> bool:
    """Every value a finite int or float (not bool), at C speed: val2017 holds ~2M coordinates."""
    return set(map(type, values)) <= _NUMBER_TYPES and math.isfinite(sum(values))


def _check_categories(categories: list, path: Path) -> None:
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            raise UserError(f"{path}: categories[{index}] has no integer 'id'")


def _entry_with_id(entry, where: str) -> str:
    """`where` with the entry's id, once the entry is known to be an object with an integer id."""
    if not isinstance(entry, dict):
        raise UserError(f"{where} is a {type(entry).__name__}, expected an object")
    if not _is_int(entry.get("id")):
        raise UserError(f"{where} has no integer 'id' ({_shown(entry.get('id'))})")
    return f"{where} (id {entry['id']})"


def _check_images(images: list, path: Path) -> dict[int, tuple[int, int]]:
    """{image id: (height, width)}; ids, file names and sample names unique."""
    sizes: dict[int, tuple[int, int]] = {}
    by_name: dict[str, str] = {}
    for index, image in enumerate(images):
        where = _entry_with_id(image, f"{path}: images[{index}]")
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise UserError(f"{where} has no 'file_name' string ({_shown(file_name)})")
        for key in ("width", "height"):
            if not _is_int(image.get(key)) or image[key] <= 0:
                raise UserError(f"{where}: '{key}' is {_shown(image.get(key))}, expected a positive integer")
        if image["id"] in sizes:
            raise UserError(f"{where}: image id {image['id']} is listed twice (its annotations would be "
                            "scored against both)")
        stem = coco_stem(file_name)
        if stem in by_name:
            raise UserError(f"{where}: {file_name} and {by_name[stem]} have one sample name '{stem}' (cut at "
                            "the first dot): their bins and outputs would be one")
        by_name[stem] = file_name
        sizes[image["id"]] = (image["height"], image["width"])
    return sizes


def _check_annotations(annotations: list, sizes: dict[int, tuple[int, int]], path: Path) -> None:
    seen_ids: set = set()
    orphans = []
    for index, annotation in enumerate(annotations):
        where = _entry_with_id(annotation, f"{path}: annotations[{index}]")
        if annotation["id"] in seen_ids:
            raise UserError(f"{where}: annotation id {annotation['id']} is used twice")
        seen_ids.add(annotation["id"])
        for key in ("image_id", "category_id", "iscrowd", "area", "bbox", "segmentation"):
            if key not in annotation:  # pycocotools' COCOeval reads every one of them
                raise UserError(f"{where} has no '{key}' (COCOeval needs it; the official files hold it "
                                "for every annotation)")
        if not _is_int(annotation["image_id"]):
            raise UserError(f"{where}: 'image_id' is {_shown(annotation['image_id'])}, expected an integer")
        category_id = annotation["category_id"]
        if not _is_int(category_id) or category_id not in COCO_CATEGORY_TO_LABEL:
            raise UserError(f"{where}: 'category_id' {_shown(category_id)} is not one of the 80 detection "
                            "categories")
        if annotation["iscrowd"] not in (0, 1) or isinstance(annotation["iscrowd"], (bool, float)):
            raise UserError(f"{where}: 'iscrowd' is {_shown(annotation['iscrowd'])}, expected 0 or 1")
        if not _is_number(annotation["area"]) or annotation["area"] < 0:
            raise UserError(f"{where}: 'area' is {_shown(annotation['area'])}, expected a number >= 0")
        bbox = annotation["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox))
                or bbox[2] < 0 or bbox[3] < 0):
            raise UserError(f"{where}: 'bbox' is {_shown(bbox)}, expected [x, y, width, height] numbers "
                            "(width, height >= 0)")
        image_hw = sizes.get(annotation["image_id"])
        if image_hw is None:
            orphans.append(annotation)
            continue
        _check_segmentation(annotation["segmentation"], image_hw, where)
    if orphans:  # valid (pycocotools indexes them), never scored: said, not refused
        print(f"[WARNING] {path}: {len(orphans)} annotation(s) name an image id that is not in 'images' "
              f"(first: annotation {orphans[0]['id']} -> image {orphans[0]['image_id']}); they are never scored",
              file=sys.stderr)


def _check_segmentation(segmentation, image_hw: tuple[int, int], where: str) -> None:
    """Polygons (lists of x, y number pairs) or an RLE of the image's size (counts str or ints)."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            # degenerate polygons (fewer than 3 points) are rasterised by pycocotools as they are
            if not isinstance(polygon, list) or not polygon or len(polygon) % 2 or not _all_numbers(polygon):
                raise UserError(f"{where}: 'segmentation' polygon {_shown(polygon)} is not a list of x, y "
                                "number pairs")
        return
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(map(_is_int, size))):
            raise UserError(f"{where}: 'segmentation' RLE has no [height, width] 'size' ({_shown(size)})")
        if tuple(size) != tuple(image_hw):
            raise UserError(f"{where}: 'segmentation' RLE is {size[0]}x{size[1]}, its image is "
                            f"{image_hw[0]}x{image_hw[1]} (height x width)")
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != size[0] * size[1]:
                raise UserError(f"{where}: 'segmentation' RLE counts are not run lengths adding up to "
                                f"{size[0]}x{size[1]} pixels")
        elif not isinstance(counts, str) or not counts:
            raise UserError(f"{where}: 'segmentation' RLE 'counts' is {_shown(counts)}, expected a string "
                            "or a list of run lengths")
        return
    raise UserError(f"{where}: 'segmentation' is {_shown(segmentation)}, expected polygons or an RLE")


def _shown(value) -> str:
    text = "missing" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
