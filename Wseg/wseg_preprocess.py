"""Guide step "数据预处理": VOC images -> 8 network inputs per image, `<id>_<k>.bin`.

    python3 wseg_preprocess.py DATA VAL_LIST OUT_DIR [--pad-size 1024] [--workers N] [--resume]

DATA holds `voc/VOCdevkit/VOC2012` (the guide's `./data`); VAL_LIST is upstream's
`val_voc.txt` (image and label paths relative to DATA) or a plain id list such as VOC's
`ImageSets/Segmentation/val.txt`. As upstream's multi-scale test loader: for k = 0..7,
scale = (1, 0.5, 1.5, 2.0)[k // 2], horizontal flip when k is odd; PIL bicubic resize to
(round(W*s), round(H*s)) with Python's half-to-even rounding; ImageNet normalisation computed
in float64; centred zero pad to PAD x PAD (floor half on top/left), pad pixels exactly 0.
Each bin is float32 [3,PAD,PAD]. The pads and sizes the postprocess needs go to
OUT_DIR/wseg_preprocess_meta.json. Every image header is read (and its largest scale checked
against the pad size) before the first bin is written; `--resume` keeps the finished bins of
an interrupted run.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import UserError, doc_parser, script_entry  # first: a Ctrl-C during the imports below is one line

import numpy as np
from PIL import Image

from common.data.images import image_sizes, load_image_rgb
from common.data.voc import ListedSample, check_exist, read_sample_list
from common.files.bins import check_unique_stems, is_finished_bin, write_bin
from common.pipeline.preprocess import add_run_arguments, preprocess_all, write_meta
from common.pipeline.sizes import check_run_size
from wseg.config import DEFAULT_PAD_SIZE, MEAN_RGB, META_NAME, SCALES, STD_RGB, VARIANTS, output_shapes


def parse_args(argv=None) -> argparse.Namespace:
    parser = doc_parser(__doc__)
    parser.add_argument("data", type=Path, help="data root holding voc/VOCdevkit/VOC2012")
    parser.add_argument("val_list", type=Path, help="val_voc.txt or a plain id list")
    parser.add_argument("out_dir", type=Path, help="folder for the <id>_<k>.bin files")
    parser.add_argument("--pad-size", type=int, default=DEFAULT_PAD_SIZE,
                        help="square network input side (the export's --input-size); default 1024")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.pad_size < 8 or args.pad_size % 8:
        parser.error("--pad-size must be a positive multiple of 8")
    return args


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(w, h) as upstream computes it: Python round, i.e. exact halves go to the even side."""
    return int(round(width * scale)), int(round(height * scale))


def centred_pads(height: int, width: int, pad_size: int) -> tuple[int, int]:
    """(top, left): the floor half of the free space goes on top / left."""
    return (pad_size - height) // 2, (pad_size - width) // 2


def normalise(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW float32, (v/255 - mean)/std evaluated in float64 as upstream."""
    values = rgb.astype(np.float64) / 255.0
    normalised = (values - np.asarray(MEAN_RGB)) / np.asarray(STD_RGB)
    return normalised.astype(np.float32).transpose(2, 0, 1)


def variant_pads(image_wh: tuple[int, int], scale: float, pad_size: int, source: Path) -> list[int]:
    """[pad_t, pad_l, h, w] (upstream order) of one scale; too large for the pad is an error."""
    width, height = scaled_size(*image_wh, scale)
    if width > pad_size or height > pad_size:
        raise UserError(f"{source}: {image_wh[0]}x{image_wh[1]} at scale {scale} is "
                        f"{width}x{height}, larger than --pad-size {pad_size}")
    return [*centred_pads(height, width, pad_size), height, width]


def variant_records(image_wh: tuple[int, int], pad_size: int, source: Path) -> list[dict]:
    """The metadata of the 8 variants, from the image size alone."""
    return [{"k": k, "scale": scale, "flip": flip, "pads": variant_pads(image_wh, scale, pad_size, source)}
            for k, (scale, flip) in enumerate(VARIANTS)]


def make_variant(image: Image.Image, scale: float, flip: bool, pad_size: int,
                 source: Path) -> tuple[np.ndarray, list[int]]:
    """One network input [3,PAD,PAD] and its pads [pad_t, pad_l, h, w] (upstream order)."""
    pad_top, pad_left, height, width = variant_pads(image.size, scale, pad_size, source)
    # PIL's bicubic resize antialiases when it shrinks; torch/cv2 bicubic would differ.
    resized = image.resize((width, height), resample=Image.BICUBIC)
    if flip:
        resized = resized.transpose(Image.FLIP_LEFT_RIGHT)
    canvas = np.zeros((3, pad_size, pad_size), dtype=np.float32)
    canvas[:, pad_top:pad_top + height, pad_left:pad_left + width] = normalise(np.asarray(resized))
    return canvas, [pad_top, pad_left, height, width]


def preprocess_one(job: tuple[ListedSample, tuple[int, int]], out_dir: Path, pad_size: int,
                   resume: bool = False) -> tuple[str, dict]:
    sample, image_wh = job  # (width, height) from the image header
    bins = [out_dir / name for name in bin_names(sample)]
    # Bins are renamed into place only once complete: an image whose 8 bins all have the right
    # size is finished, and its metadata follows from the image size.
    if resume and all(is_finished_bin(path, (3, pad_size, pad_size), np.float32) for path in bins):
        return sample.image_id, {"original_hw": [image_wh[1], image_wh[0]],
                                 "variants": variant_records(image_wh, pad_size, sample.image_path)}
    image = load_image_rgb(sample.image_path)
    variants = []
    for k, (scale, flip) in enumerate(VARIANTS):
        array, pads = make_variant(image, scale, flip, pad_size, sample.image_path)
        write_bin(out_dir / f"{sample.image_id}_{k}.bin", array)
        variants.append({"k": k, "scale": scale, "flip": flip, "pads": pads})
    return sample.image_id, {"original_hw": [image.size[1], image.size[0]], "variants": variants}


def bin_names(sample: ListedSample) -> list[str]:
    return [f"{sample.image_id}_{k}.bin" for k in range(len(VARIANTS))]


def main(args: argparse.Namespace) -> int:
    check_run_size(f"--pad-size {args.pad_size}", (args.pad_size, args.pad_size), output_shapes=output_shapes)
    samples = read_sample_list(args.data, args.val_list)
    check_exist(samples, labels=False)
    check_unique_stems([(sample.image_path, name) for sample in samples for name in bin_names(sample)])
    # Broken or too large images stop the run now, not an hour into it.
    sizes_wh = image_sizes([sample.image_path for sample in samples])
    for sample, size_wh in zip(samples, sizes_wh):
        variant_pads(size_wh, max(SCALES), args.pad_size, sample.image_path)
    work = partial(preprocess_one, pad_size=args.pad_size, resume=args.resume)
    out_dir, images = preprocess_all(work, list(zip(samples, sizes_wh)), args.out_dir, resume=args.resume,
                                     workers=args.workers)
    meta = {"pad_size": args.pad_size, "scales": list(SCALES), "flip": True,
            "mean_rgb": list(MEAN_RGB), "std_rgb": list(STD_RGB),
            "bin": {"dtype": "float32", "shape": [3, args.pad_size, args.pad_size]},
            "images": images}
    write_meta(out_dir, meta, META_NAME)
    print(f"wrote {len(images) * len(VARIANTS)} bins for {len(images)} images to {args.out_dir} "
          f"and {META_NAME}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
