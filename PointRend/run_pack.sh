#!/usr/bin/env bash
# PointRend end to end with the commands of PointRend/README.md, then the PyTorch reference run
# on the same bins and one summary row. Usage: see common/pack_lib.sh.
set -euo pipefail
PACK=PointRend
source "$(dirname "${BASH_SOURCE[0]}")/../common/pack_lib.sh"
parse_pack_args "$@"
cd "$REPO_ROOT/$PACK"

# The guide's size is 1024x2048; --quick uses 128x256, where the 8192-point budget covers the
# whole first subdivision grid (64x128) but only a quarter of the second (128x256).
HEIGHT=1024; WIDTH=2048; [ "$QUICK" = 1 ] && { HEIGHT=128; WIDTH=256; }
COUNT=${COUNT:-$([ "$QUICK" = 1 ] && echo 3 || echo 2)}
if [ -z "$DATA_ROOT" ]; then
    step "synthetic Cityscapes val ($COUNT images of ${HEIGHT}x${WIDTH})"
    "$PY" -m common.synth cityscapes --out "$WORK/data" --count "$COUNT" --height "$HEIGHT" --width "$WIDTH"
    DATA_ROOT="$WORK/data"
fi
CKPT=$(weights_file model_final_cf6ac1.pkl)
CONFIG=detectron2/projects/PointRend/configs/SemanticSegmentation/pointrend_semantic_R_101_FPN_1x_cityscapes.yaml

step "preprocess (PointRend_preprocess.py)"
"$PY" PointRend_preprocess.py "$DATA_ROOT" "$WORK/prep_bin" --input_size "$HEIGHT" "$WIDTH"
step "export to ONNX (PointRend_pkl2onnx.py)"
"$PY" PointRend_pkl2onnx.py "$CONFIG" "$CKPT" "$WORK/model/PointRend.onnx" --input_size "$HEIGHT" "$WIDTH"
step "ATC (Ascend only)"
"$PY" -m common.atc --model "$WORK/model/PointRend.onnx" --output "$WORK/model/PointRend_bs1" \
    --input_shape "images:1,3,$HEIGHT,$WIDTH" --log error
step "inference (ONNX Runtime)"
"$PY" -m common.infer --model "$WORK/model/PointRend.onnx" --input "$WORK/prep_bin" \
    --output "$WORK/result" --output_dirname onnxruntime --outfmt BIN --batchsize 1
step "accuracy (PointRend_postprocess.py)"
"$PY" PointRend_postprocess.py "$DATA_ROOT" "$WORK/result/onnxruntime" \
    --save_path "$WORK/metric_onnxruntime.json" --show-dir "$WORK/show/onnxruntime"

[ "$SKIP_PYTORCH" = 1 ] && exit 0
step "reference: PyTorch on the same bins"
"$PY" -m common.torch_infer --model "$WORK/model/PointRend.onnx" --checkpoint "$CKPT" \
    --input "$WORK/prep_bin" --output "$WORK/result" --output_dirname pytorch
"$PY" PointRend_postprocess.py "$DATA_ROOT" "$WORK/result/pytorch" --save_path "$WORK/metric_pytorch.json" \
    --show-dir "$WORK/show/pytorch"
step "where PyTorch and the backend disagree (pictures)"
"$PY" -m common.disagreement "$WORK/show/pytorch" "$WORK/show/onnxruntime" --out "$WORK/disagreement"
"$PY" -m common.pack_summary --pack "$PACK" --work "$WORK" --metric mIoU --key miou --classes 19 --data "$DATA_LABEL"
