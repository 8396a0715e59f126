"""Guide step "精度验证" (accuracy): output bins -> per-class IoU and mIoU on Cityscapes val.

`python3 HRNet_postprocess.py --res_path results/bs1 --data_path data/cityscapes/gtFine/val/
--save_path ./result_bs1.json`. As the ModelZoo script and upstream `testval` (docs/specs/3D_HRNet.md
section 7): each output (19, H/4, W/4) is upsampled to the label size (bilinear,
align_corners=True, on the logits), argmax'd, and one dataset-wide 19x19 confusion matrix is
accumulated against the label's trainIds (255 ignored). IoU = tp / max(1, union); mIoU = the
plain mean over the 19 classes (an absent class counts 0). The JSON keeps the guide's keys
(`title`, `value.Iou_array`, `value.mean_Iou`) for the OCR output (`_1.bin`), the one the guide
scores; `--aux-index 0` scores the aux output (`_0.bin`) as well. The upsample + argmax is
common.eval.upsample.bilinear_argmax: torch's bilinear weights, computed only where the class can
change (about 20x faster than upsampling all 19 maps).

Outputs are paired with labels by name (`<city>_<seq>_<frame>`), never by sorted position;
both this project's bin names (`..._leftImg8bit_1.bin`) and the ModelZoo ones
(`..._gtFine_labelIds_1.bin`) are read. A label without its prediction, or a prediction without
a label, stops the run naming it (`--allow-missing` scores the images that have outputs).
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import numpy as np

from common.data.cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_IGNORE, CITYSCAPES_LABEL_SET,
                                    cityscapes_base_name, cityscapes_image_of_label, list_cityscapes_labels,
                                    read_cityscapes_label)
from common.data.images import check_label_sizes
from common.data.labels import add_unknown_ids_argument, warn_unknown_as_void
from common.eval.confusion import ConfusionMatrix
from common.eval.upsample import bilinear_argmax
from common.files.atomic import write_json_atomic
from common.files.bins import expected_nbytes, list_bins, read_bin, require_finite
from common.files.folders import output_file_parent, output_folders
from common.files.outputs import split_output_name, warn_left_out
from common.pipeline.parallel import map_with_progress
from common.pipeline.preprocess import add_scoring_arguments
from hrnet3d.config import NUM_CLASSES, output_shapes
from common.viz.palettes import CITYSCAPES
from common.viz.show import add_show_dir_argument, write_show_pictures
OCR_OUTPUT_INDEX = 1  # ais_bench `_1.bin` = output2 = the OCR head (the old benchmark tool wrote `_2`)
AUX_OUTPUT_INDEX = 0  # `--aux-index 0` scores it too
NO_AUX = -1
JSON_TITLE = "overall statistical evaluation"
SHOW_FIRST = 3


def index_outputs(res_path: Path) -> dict[str, dict[int, Path]]:
    """{base name: {output index: path}} for every `<stem>_<k>.bin` in the result folder."""
    outputs: dict[str, dict[int, Path]] = {}
    for path in list_bins(res_path):
        stem, index = split_output_name(path)
        base = cityscapes_base_name(stem)
        previous = outputs.setdefault(base, {}).get(index)
        if previous is not None:
            raise UserError(f"{path}: a second output {index} for {base} (also {previous.name})")
        outputs[base][index] = path
    return outputs


def pair_outputs_with_labels(outputs: dict[str, dict[int, Path]], labels: dict[str, Path], index: int,
                             allow_missing: bool) -> tuple[list[str], list[str]]:
    """Names having both a label and output `index`; errors name the first unmatched file."""
    extra = sorted(name for name in outputs if name not in labels)
    if extra:
        first = next(iter(outputs[extra[0]].values()))
        raise UserError(f"{first}: no label {extra[0]}_gtFine_labelIds.png for this output "
                        f"({len(extra)} output name(s) without a label, first: "
                        f"{', '.join(extra[:SHOW_FIRST])}): wrong --data_path?")
    matched = [name for name in labels if index in outputs.get(name, {})]
    missing = [name for name in labels if name not in matched]
    if missing and not allow_missing:
        raise UserError(f"{labels[missing[0]]}: no prediction (output {index}) for this label "
                        f"({len(missing)} of {len(labels)} labels have none, first: "
                        f"{', '.join(missing[:SHOW_FIRST])}); pass --allow-missing to score the rest")
    if not matched:
        raise UserError(f"no label has its output {index}: nothing to score")
    return matched, missing


def check_label_images(labels: dict[str, Path]) -> None:
    """Each label the size of its image (when the image is in the standard layout beside it),
    from the headers: a label of another size would have the right outputs blamed."""
    pairs = [(cityscapes_image_of_label(path), path) for path in labels.values()]
    check_label_sizes([(image, label) for image, label in pairs if image.is_file()])


def score_one(name: str, labels: dict[str, Path], outputs: dict[str, dict[int, Path]],
              indices: tuple[int, ...], show_dir: Path | None = None,
              unknown_as_void: bool = False) -> list[ConfusionMatrix]:
    """One confusion matrix per output index for one image."""
    train_ids, unknown = read_cityscapes_label(labels[name], unknown_as_void)
    logits_shape = output_shapes(train_ids.shape)[0]
    matrices = []
    for index in indices:
        path = outputs[name][index]
        if path.stat().st_size != expected_nbytes(logits_shape, np.float32):
            raise UserError(f"{path}: {path.stat().st_size} bytes, expected {expected_nbytes(logits_shape, np.float32)} "
                            f"(float32 {logits_shape}) for its label {labels[name].name}, which is "
                            f"{train_ids.shape[1]}x{train_ids.shape[0]}: outputs of another input size?")
        logits = require_finite(read_bin(path, logits_shape, np.float32), path)
        matrix = ConfusionMatrix(NUM_CLASSES, CITYSCAPES_IGNORE)
        matrix.note_unknown_as_void(unknown)
        # align_corners=True, as upstream testval and the network's own upsamples
        prediction = bilinear_argmax(logits, train_ids.shape, align_corners=True)
        matrix.update(train_ids, prediction)
        matrices.append(matrix)
        if show_dir is not None and index == indices[0]:  # the OCR output, the one the guide scores
            write_show_pictures(show_dir, name, prediction, CITYSCAPES, cityscapes_image_of_label(labels[name]))
    return matrices


def guide_iou(matrix: ConfusionMatrix) -> tuple[list[float], float]:
    """The guide's numbers: IoU = tp / max(1, union) per class, mean over all 19."""
    iou = matrix.class_statistics()["iou"]
    return [float(v) for v in iou], float(iou.mean())


def metrics_entry(matrix: ConfusionMatrix) -> dict:
    iou_array, mean_iou = guide_iou(matrix)
    return {"Iou_array": iou_array, "mean_Iou": mean_iou,
            "mean_Iou_present_classes": matrix.mean_iou(present_only=True),
            "pixel_accuracy": matrix.pixel_accuracy(),
            "per_class_iou": dict(zip(CITYSCAPES_CLASSES, iou_array)),
            "present_classes": [name for name, v in zip(CITYSCAPES_CLASSES, matrix.iou_per_class())
                                if not np.isnan(v)]}


def format_table(ocr: ConfusionMatrix, aux: ConfusionMatrix | None) -> str:
    width = max(len(name) for name in CITYSCAPES_CLASSES)
    ocr_iou, ocr_mean = guide_iou(ocr)
    aux_iou, aux_mean = guide_iou(aux) if aux is not None else ([None] * NUM_CLASSES, None)
    lines = [f"{'class':<{width}}  IoU (OCR)" + ("  IoU (aux)" if aux is not None else "")]
    for name, main_value, aux_value in zip(CITYSCAPES_CLASSES, ocr_iou, aux_iou):
        lines.append(f"{name:<{width}}  {main_value:9.4f}" + (f"  {aux_value:9.4f}" if aux is not None else ""))
    lines.append(f"{'mIoU':<{width}}  {ocr_mean:9.4f}" + (f"  {aux_mean:9.4f}" if aux is not None else "")
                 + f"   ({ocr.images} images, 19-class mean as the guide)")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--res_path", required=True, help="inference output folder (results/bs1)")
    parser.add_argument("--data_path", required=True, help="label folder, e.g. data/cityscapes/gtFine/val/")
    parser.add_argument("--save_path", default="./result.json", help="metric JSON to write")
    parser.add_argument("--output-index", type=int, default=OCR_OUTPUT_INDEX,
                        help="suffix of the OCR output files (1 for ais_bench / common.infer; 2 for the "
                             "old benchmark tool)")
    parser.add_argument("--aux-index", type=int, default=NO_AUX,
                        help=f"suffix of the aux output files to score as well ({AUX_OUTPUT_INDEX} for ais_bench / "
                             f"common.infer; default {NO_AUX}: the OCR output only, as the guide)")
    add_scoring_arguments(parser)
    add_unknown_ids_argument(parser)
    add_show_dir_argument(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    res_path = Path(args.res_path)
    output_file_parent(args.save_path)  # a bad --save_path fails now, not after scoring
    output_folders(args.show_dir)
    labels = list_cityscapes_labels(args.data_path)
    check_label_images(labels)
    outputs = index_outputs(res_path)
    names, missing = pair_outputs_with_labels(outputs, labels, args.output_index, args.allow_missing)
    warn_left_out(missing, len(labels))
    score_aux = args.aux_index >= 0
    without_aux = [name for name in names if args.aux_index not in outputs[name]] if score_aux else []
    if without_aux:
        raise UserError(f"{outputs[without_aux[0]][args.output_index]}: no aux output _{args.aux_index}.bin "
                        f"beside it ({len(without_aux)} image(s) lack one); drop --aux-index to score OCR only")
    indices = (args.output_index, args.aux_index) if score_aux else (args.output_index,)

    matrices = [ConfusionMatrix(NUM_CLASSES, CITYSCAPES_IGNORE) for _ in indices]
    work = partial(score_one, labels=labels, outputs=outputs, indices=indices, show_dir=args.show_dir,
                   unknown_as_void=args.unknown_ids_as_void)
    for per_image in map_with_progress(work, names, args.workers, desc="Postprocess"):
        for matrix, image_matrix in zip(matrices, per_image):
            matrix.merge(image_matrix)
    matrices[0].require_scored_pixels(str(args.data_path))

    ocr = matrices[0]
    aux = matrices[1] if score_aux else None
    main_entry = metrics_entry(ocr)
    result = {"title": JSON_TITLE, "value": {"Iou_array": main_entry["Iou_array"], "mean_Iou": main_entry["mean_Iou"]},
              "classes": list(CITYSCAPES_CLASSES), "images": ocr.images, "images_left_out": len(missing),
              "images_left_out_names": missing,
              "label_pixels_unknown_as_void": ocr.unknown_as_void_pixels,
              "res_path": str(res_path), "ocr_head": main_entry,
              "aux_head": metrics_entry(aux) if aux is not None else None}
    print(format_table(ocr, aux))
    write_json_atomic(args.save_path, result)
    warn_unknown_as_void(ocr.unknown_as_void_pixels, ocr.unknown_as_void_images, CITYSCAPES_LABEL_SET)
    print(f"mean_Iou: {main_entry['mean_Iou']:.6f}  (written to {args.save_path})")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
