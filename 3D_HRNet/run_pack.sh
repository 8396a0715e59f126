#!/usr/bin/env bash
# 3D_HRNet end to end with the commands of 3D_HRNet/README.md, the PyTorch reference run on the
# same bins, one summary row, and the cost of the guide's Resize edit (nearest vs bilinear).
# Usage: see common/pack_lib.sh.
set -euo pipefail
PACK=3D_HRNet
source "$(dirname "${BASH_SOURCE[0]}")/../common/pack_lib.sh"
parse_pack_args "$@"
cd "$REPO_ROOT/$PACK"

# The guide's size is 1024x2048 (about a minute per image per backend on a CPU); --quick
# shrinks it so the whole pack runs in a couple of minutes.
HEIGHT=1024 WIDTH=2048; [ "$QUICK" = 1 ] && HEIGHT=64 WIDTH=128
COUNT=${COUNT:-$([ "$QUICK" = 1 ] && echo 3 || echo 1)}
if [ -z "$DATA_ROOT" ]; then
    step "synthetic Cityscapes ($COUNT images of ${HEIGHT}x${WIDTH})"
    "$PY" -m common.synth cityscapes --out "$WORK/data" --count "$COUNT" --height "$HEIGHT" --width "$WIDTH"
    DATA_ROOT="$WORK/data"
fi
CKPT=$(weights_file hrnet.pth)

step "prepare dataset: preprocess"
"$PY" HRNet_preprocess.py --src_path="$DATA_ROOT" --save_path="$WORK/prep_dataset"
step "1.2 export to ONNX"
"$PY" HRNet_pth2onnx.py --pth "$CKPT" --save_path "$WORK/model/hrnet.onnx" --input_hw "$HEIGHT" "$WIDTH"
step "1.2 optimise the ONNX: the guide's Resize edit, into a second file"
"$PY" performance_optimize_resize.py "$WORK/model/hrnet.onnx" "$WORK/model/hrnet_nearest.onnx"
step "1.3 ATC (Ascend only)"
OUT_NODES=$("$PY" -c "import sys, performance_optimize_resize as p; from common.onnx_tools import load_onnx
print(';'.join(n + ':0' for n in p.output_conv_nodes(load_onnx(sys.argv[1], load_weights=False))))" \
    "$WORK/model/hrnet_nearest.onnx")
"$PY" -m common.atc --model "$WORK/model/hrnet_nearest.onnx" --output "$WORK/model/hrnet_bs1" \
    --input_shape "image:1,3,$HEIGHT,$WIDTH" --out_nodes "$OUT_NODES" --log error
step "2.2 inference (ONNX Runtime, unedited graph)"
"$PY" -m common.infer --model "$WORK/model/hrnet.onnx" --input "$WORK/prep_dataset" \
    --output "$WORK/result" --output_dirname onnxruntime --outfmt BIN --batchsize 1
step "2.3 postprocess"
"$PY" HRNet_postprocess.py --res_path "$WORK/result/onnxruntime" --data_path "$DATA_ROOT/cityscapes/gtFine/val/" \
    --save_path "$WORK/metric_onnxruntime.json" --show_dir "$WORK/show/onnxruntime"

step "the Resize edit: inference and postprocess on the edited graph"
"$PY" -m common.infer --model "$WORK/model/hrnet_nearest.onnx" --input "$WORK/prep_dataset" \
    --output "$WORK/result" --output_dirname onnxruntime_nearest --outfmt BIN --batchsize 1
"$PY" HRNet_postprocess.py --res_path "$WORK/result/onnxruntime_nearest" \
    --data_path "$DATA_ROOT/cityscapes/gtFine/val/" --save_path "$WORK/metric_onnxruntime_nearest.json" \
    --show_dir "$WORK/show/onnxruntime_nearest"
"$PY" resize_edit_report.py --reference "$WORK/result/onnxruntime" --candidate "$WORK/result/onnxruntime_nearest" \
    --reference_metric "$WORK/metric_onnxruntime.json" --candidate_metric "$WORK/metric_onnxruntime_nearest.json" \
    --save_path "$WORK/resize_edit.json"

[ "$SKIP_PYTORCH" = 1 ] && exit 0
step "reference: PyTorch on the same bins"
"$PY" -m common.torch_infer --model "$WORK/model/hrnet.onnx" --checkpoint "$CKPT" \
    --input "$WORK/prep_dataset" --output "$WORK/result" --output_dirname pytorch
"$PY" HRNet_postprocess.py --res_path "$WORK/result/pytorch" --data_path "$DATA_ROOT/cityscapes/gtFine/val/" \
    --save_path "$WORK/metric_pytorch.json" --show_dir "$WORK/show/pytorch"
step "where PyTorch and the backend disagree (pictures)"
"$PY" -m common.disagreement "$WORK/show/pytorch" "$WORK/show/onnxruntime" --out "$WORK/disagreement"
"$PY" -m common.pack_summary --pack "$PACK" --work "$WORK" --metric mIoU --key value.mean_Iou --classes 19 --data "$DATA_LABEL"
