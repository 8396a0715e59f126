"""COCO 2017 instances: the 80 detection classes, category ids, and the annotation reader."""
from __future__ import annotations

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
        self.id_by_stem = {Path(self.coco.imgs[i]["file_name"]).stem: i for i in self.image_ids}

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
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset, dict) or key not in dataset:
            raise UserError(f"{path}: not a COCO instances file (no '{key}' list)")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco
