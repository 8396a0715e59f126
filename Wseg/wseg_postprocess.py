"""Guide step "精度验证" 1: output bins -> raw and CRF class-index PNG masks.

    python3 wseg_postprocess.py DATA VAL_LIST RESULT_DIR OUT_DIR [--crf auto|on|off]

RESULT_DIR holds, per image id and variant k = 0..7, `<id>_<k>_0.bin` (cls, float32 [20]) and
`<id>_<k>_1.bin` (mask, float32 [21,PAD,PAD], or [21,PAD/4,PAD/4] from a --lean-mask export:
the size of the file tells, and the missing align_corners=True upsample is done here).
As upstream's multi-scale merge: classes kept where max_k sigmoid(cls_k) > 0.1; each mask is
cropped to its unpadded area, resized bilinearly (align_corners=False) to the image size,
flipped back when k is odd and zeroed for dropped classes; the 8 maps are averaged and the
background channel raised to the power 3. Writes OUT_DIR/<id>.png (argmax) and, through the
dense CRF (pydensecrf2; Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10, 10
iterations), OUT_DIR/crf/<id>.png. The pads come from the preprocess metadata file.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import UserError, doc_parser, script_entry  # first: a Ctrl-C during the imports below is one line

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.data.images import image_sizes, read_image_rgb
from common.data.voc import ListedSample, check_exist, read_sample_list
from common.files.atomic import atomic_path, write_json_atomic
from common.files.folders import output_folders
from common.files.bins import read_bin, require_finite
from common.files.outputs import match_outputs, warn_left_out
from common.pipeline.parallel import map_with_progress
from common.pipeline.preprocess import add_scoring_arguments, find_meta, read_meta
from wseg import model
from wseg.config import META_NAME, NUM_CLASSES, VARIANTS
from common.viz.palettes import VOC
from common.viz.show import add_show_dir_argument, write_show_pictures

NUM_VARIANTS = len(VARIANTS)
FP_CUT_SCORE = 0.1  # TEST.FP_CUT_SCORE: class kept when its best sigmoid score exceeds this
BG_POW = 3  # TEST.BG_POW
CRF_ITERATIONS = 10
CRF_GAUSSIAN = {"sxy": 3, "compat": 3}
CRF_BILATERAL = {"sxy": 80, "srgb": 13, "compat": 10}


def parse_args(argv=None) -> argparse.Namespace:
    parser = doc_parser(__doc__)
    parser.add_argument("data", type=Path, help="data root holding voc/VOCdevkit/VOC2012")
    parser.add_argument("val_list", type=Path, help="val_voc.txt or a plain id list")
    parser.add_argument("result_dir", type=Path, help="inference output folder")
    parser.add_argument("out_dir", type=Path, help="folder for <id>.png and crf/<id>.png")
    parser.add_argument("--meta", type=Path, default=None,
                        help=f"the preprocess's {META_NAME} (default: found through the "
                             "inference summary, or in RESULT_DIR's parent)")
    parser.add_argument("--crf", choices=("auto", "on", "off"), default="auto",
                        help="auto: run the CRF when pydensecrf is importable, else say why not "
                             "and write the raw masks only; on: fail without it; off: skip")
    add_scoring_arguments(parser)
    add_show_dir_argument(parser)
    return parser.parse_args(argv)


# ---- inputs -------------------------------------------------------------------------------

def load_meta(result_dir: Path, explicit: Path | None) -> tuple[dict, Path]:
    """The preprocess metadata (and where it was found) with every field the merge reads
    checked, before any work."""
    path = find_meta(result_dir, explicit, META_NAME, also=[result_dir.parent / META_NAME])
    meta = read_meta(path, ("pad_size", "images"), "wseg_preprocess.py")
    pad_size = meta["pad_size"]
    if not _positive_int(pad_size) or not isinstance(meta["images"], dict):
        raise UserError(f"{path}: not a {META_NAME} written by wseg_preprocess.py ('pad_size' or 'images')")
    for image_id, record in meta["images"].items():
        check_image_record(record, pad_size, f"{path}: images['{image_id}']")
    return meta, path


def _positive_int(value) -> bool:
    return type(value) is int and value > 0


def check_image_record(record, pad_size: int, where: str) -> None:
    """original_hw, and 8 variants whose pads [top, left, h, w] lie inside the pad x pad input."""
    if not isinstance(record, dict):
        raise UserError(f"{where} is not an object")
    original_hw = record.get("original_hw")
    if not (isinstance(original_hw, list) and len(original_hw) == 2 and all(map(_positive_int, original_hw))):
        raise UserError(f"{where}: 'original_hw' is {original_hw!r:.40}, expected [height, width]")
    variants = record.get("variants")
    if not isinstance(variants, list) or len(variants) != NUM_VARIANTS:
        shown = "missing" if variants is None else f"{type(variants).__name__} of {len(variants) if isinstance(variants, list) else '?'}"
        raise UserError(f"{where}: 'variants' is {shown}, expected a list of {NUM_VARIANTS} (one per input)")
    for k, variant in enumerate(variants):
        pads = variant.get("pads") if isinstance(variant, dict) else None
        if not (isinstance(pads, list) and len(pads) == 4 and all(type(v) is int for v in pads)):
            raise UserError(f"{where}: variant {k} has no 'pads' [top, left, height, width]")
        if not isinstance(variant.get("flip"), bool):
            raise UserError(f"{where}: variant {k} has no boolean 'flip'")
        top, left, height, width = pads
        if top < 0 or left < 0 or height <= 0 or width <= 0 or top + height > pad_size or left + width > pad_size:
            raise UserError(f"{where}: variant {k} pads {pads} reach outside the {pad_size}x{pad_size} input "
                            "(pad_size of the metadata)")


def crf_backend(mode: str):
    """The pydensecrf modules, or None with the reason printed once (mode auto)."""
    if mode == "off":
        return None
    try:
        import pydensecrf.densecrf as densecrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError as err:
        if mode == "on":
            raise UserError(f"--crf on: pydensecrf is not importable ({err}); "
                            "pip install pydensecrf2 (builds from source, needs g++)") from None
        print(f"CRF skipped: pydensecrf is not importable ({err}); install it with "
              "`pip install pydensecrf2` (builds from source, needs g++). Raw masks are written.")
        return None
    return densecrf, unary_from_softmax


def mask_side(path: Path, pad_size: int) -> int:
    """Full (PAD) or lean (PAD/4) mask output, told apart by the file size."""
    size = path.stat().st_size
    for side in (pad_size, model.lean_mask_size(pad_size)):
        if size == NUM_CLASSES * side * side * 4:
            return side
    lean = model.lean_mask_size(pad_size)
    raise UserError(f"{path}: {size} bytes, expected float32 [21,{pad_size},{pad_size}] or, from a "
                    f"--lean-mask export, [21,{lean},{lean}] (pad size {pad_size} from the metadata)")


# ---- merge ----------------------------------------------------------------------------------

def present_classes(class_scores: np.ndarray) -> np.ndarray:
    """0/1 float vector of the 20 classes: best sigmoid over the 8 variants > FP_CUT_SCORE."""
    best = torch.sigmoid(torch.from_numpy(class_scores)).amax(0)
    return (best > FP_CUT_SCORE).float()


def variant_to_image(mask: torch.Tensor, pads: list[int], flip: bool, image_hw: tuple[int, int],
                     pad_size: int) -> torch.Tensor:
    """One variant's [21,S,S] mask -> [21,H,W] on the original image, un-flipped."""
    if mask.shape[-1] != pad_size:  # lean output: the model's own final upsample, done here
        mask = model.upsample_mask(mask[None], (pad_size, pad_size))[0]
    pad_top, pad_left, height, width = pads
    cropped = mask[:, pad_top:pad_top + height, pad_left:pad_left + width]
    resized = F.interpolate(cropped[None], size=image_hw, mode="bilinear", align_corners=False)[0]
    return torch.flip(resized, (-1,)) if flip else resized


def merge_variants(masks: list[torch.Tensor], labels: torch.Tensor, variants: list[dict],
                   image_hw: tuple[int, int], pad_size: int) -> np.ndarray:
    """Mean of the 8 re-aligned masks with absent classes zeroed, background ** BG_POW."""
    total = None
    for mask, variant in zip(masks, variants):
        aligned = variant_to_image(mask, variant["pads"], variant["flip"], image_hw, pad_size)
        aligned[1:] *= labels[:, None, None]
        total = aligned if total is None else total + aligned
    merged = total.numpy() / len(masks)
    merged[0] = np.power(merged[0], BG_POW)
    return merged


def dense_crf(rgb: np.ndarray, probabilities: np.ndarray, backend) -> np.ndarray:
    densecrf, unary_from_softmax = backend
    height, width = rgb.shape[:2]
    crf = densecrf.DenseCRF2D(width, height, NUM_CLASSES)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probabilities)))
    crf.addPairwiseGaussian(**CRF_GAUSSIAN)
    # pydensecrf needs a writable buffer; np.asarray of a PIL image is read-only.
    crf.addPairwiseBilateral(rgbim=np.array(rgb, dtype=np.uint8, order="C"), **CRF_BILATERAL)
    refined = np.array(crf.inference(CRF_ITERATIONS)).reshape(NUM_CLASSES, height, width)
    return refined.argmax(0).astype(np.uint8)


def write_png(path: Path, class_map: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(class_map.astype(np.uint8), mode="L").save(tmp, format="PNG")


# ---- per image ------------------------------------------------------------------------------

def read_outputs(result_dir: Path, image_id: str, pad_size: int) -> tuple[np.ndarray, list[torch.Tensor]]:
    scores, masks = [], []
    for k in range(NUM_VARIANTS):
        scores_path = result_dir / f"{image_id}_{k}_0.bin"
        # A NaN class score would silently drop the class (NaN > FP_CUT_SCORE is False).
        scores.append(require_finite(read_bin(scores_path, (NUM_CLASSES - 1,)), scores_path))
        mask_path = result_dir / f"{image_id}_{k}_1.bin"
        side = mask_side(mask_path, pad_size)
        mask = require_finite(read_bin(mask_path, (NUM_CLASSES, side, side)), mask_path)
        masks.append(torch.from_numpy(mask.copy()))
    return np.stack(scores), masks


def postprocess_one(sample: ListedSample, result_dir: Path, out_dir: Path, meta: dict,
                    crf_mode: str, show_dir: Path | None = None) -> dict:
    geometry = meta["images"].get(sample.image_id)
    if geometry is None:
        raise UserError(f"{sample.image_id}: not in the preprocess metadata (other list?)")
    rgb = read_image_rgb(sample.image_path)
    image_hw = tuple(geometry["original_hw"])
    if rgb.shape[:2] != image_hw:
        raise UserError(f"{sample.image_path}: image is {rgb.shape[:2]}, the preprocess saw {image_hw}")
    pad_size = int(meta["pad_size"])
    scores, masks = read_outputs(result_dir, sample.image_id, pad_size)
    labels = present_classes(scores)
    merged = merge_variants(masks, labels, geometry["variants"], image_hw, pad_size)
    final_mask = merged.argmax(0)
    write_png(out_dir / f"{sample.image_id}.png", final_mask)
    backend = crf_backend(crf_mode) if crf_mode != "off" else None
    if backend is not None:
        final_mask = dense_crf(rgb, merged, backend)
        write_png(out_dir / "crf" / f"{sample.image_id}.png", final_mask)
    if show_dir is not None:  # the mask eval_seg scores: the CRF one when the CRF ran
        write_show_pictures(show_dir, sample.image_id, final_mask.astype(np.uint8), VOC, sample.image_path)
    return {"id": sample.image_id, "classes": [int(c) + 1 for c in np.flatnonzero(labels.numpy())],
            "crf": backend is not None}


def main(args: argparse.Namespace) -> int:
    samples = read_sample_list(args.data, args.val_list)
    check_exist(samples, labels=False)
    image_sizes([s.image_path for s in samples])  # the CRF reads each image: a broken one fails now
    meta, meta_path = load_meta(args.result_dir, args.meta)
    stems = [f"{s.image_id}_{k}" for s in samples for k in range(NUM_VARIANTS)]
    complete, _ = match_outputs(args.result_dir, stems, num_outputs=2,
                                allow_missing=args.allow_missing)
    complete = set(complete)
    ready = [s for s in samples if all(f"{s.image_id}_{k}" in complete for k in range(NUM_VARIANTS))]
    if not ready:
        raise UserError(f"{args.result_dir}: no image has all {NUM_VARIANTS} outputs")
    ready_ids = {s.image_id for s in ready}
    unknown = [s.image_id for s in ready if s.image_id not in meta["images"]]
    if unknown:  # checked now, not when a worker reaches the image
        raise UserError(f"{meta_path}: no record of {len(unknown)} listed image(s) "
                        f"(first: {', '.join(unknown[:3])}): made from another list?")
    warn_left_out([s.image_id for s in samples if s.image_id not in ready_ids], len(samples))
    crf_mode = "off" if crf_backend(args.crf) is None else "on"
    output_folders(args.out_dir, args.out_dir / "crf" if crf_mode == "on" else None, args.show_dir)
    work = partial(postprocess_one, result_dir=args.result_dir, out_dir=args.out_dir, meta=meta,
                   crf_mode=crf_mode, show_dir=args.show_dir)
    records = list(map_with_progress(work, ready, args.workers, desc="Postprocess"))
    summary = {"images": len(records), "images_left_out": len(samples) - len(records),
               "crf": crf_mode == "on", "result_dir": str(args.result_dir),
               "raw_masks": str(args.out_dir),
               "crf_masks": str(args.out_dir / "crf") if crf_mode == "on" else None,
               "per_image": records}
    write_json_atomic(args.out_dir / "postprocess_summary.json", summary)
    where = f"{args.out_dir} and {args.out_dir / 'crf'}" if crf_mode == "on" else f"{args.out_dir} (no CRF)"
    print(f"wrote masks of {len(records)} images to {where}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
