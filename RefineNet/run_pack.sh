#!/usr/bin/env bash
# RefineNet end to end with the commands of RefineNet/README.md, then the PyTorch reference run
# on the same bins and one summary row. Usage: see common/pack_lib.sh.
set -euo pipefail
PACK=RefineNet
source "$(dirname "${BASH_SOURCE[0]}")/../common/pack_lib.sh"
parse_pack_args "$@"
cd "$REPO_ROOT/$PACK"

SIZE=500; [ "$QUICK" = 1 ] && SIZE=96
COUNT=${COUNT:-$([ "$QUICK" = 1 ] && echo 3 || echo 4)}
if [ -z "$DATA_ROOT" ]; then
    step "synthetic VOC2012 ($COUNT images)"
    "$PY" -m common.synth voc --out "$WORK/data" --count "$COUNT"
    DATA_ROOT="$WORK/data"
fi
CKPT=$(weights_file RefineNet_910.pth.tar)

step "3.1 export to ONNX"
"$PY" RefineNet_pth2onnx.py --input-file "$CKPT" --output-file "$WORK/model/RefineNet_910.onnx" --size "$SIZE"
step "3.2 ATC (Ascend only)"
"$PY" -m common.atc --model "$WORK/model/RefineNet_910.onnx" --output "$WORK/model/RefineNet_910_bs1" \
    --input_shape "input:1,3,$SIZE,$SIZE" --log error
step "4.2 preprocess"
"$PY" RefineNet_preprocess.py --root-dir "$DATA_ROOT/VOCdevkit/VOC2012" --bin-dir "$WORK/prepare_dataset" --size "$SIZE"
step "4.3 dataset info file"
"$PY" get_info.py bin "$WORK/prepare_dataset" "$WORK/refinenet_prep_bin.info" "$SIZE" "$SIZE"
step "5.2 inference (ONNX Runtime)"
"$PY" -m common.infer --model "$WORK/model/RefineNet_910.onnx" --input "$WORK/prepare_dataset" \
    --output "$WORK/result" --output_dirname onnxruntime --batchsize 1
step "6.1 postprocess"
"$PY" RefineNet_postprocess.py --val-dir "$DATA_ROOT" --result-dir "$WORK/result/onnxruntime" \
    --save_path "$WORK/metric_onnxruntime.json" --show-dir "$WORK/show/onnxruntime"

[ "$SKIP_PYTORCH" = 1 ] && exit 0
step "reference: PyTorch on the same bins"
"$PY" -m common.torch_infer --model "$WORK/model/RefineNet_910.onnx" --checkpoint "$CKPT" \
    --input "$WORK/prepare_dataset" --output "$WORK/result" --output_dirname pytorch
"$PY" RefineNet_postprocess.py --val-dir "$DATA_ROOT" --result-dir "$WORK/result/pytorch" \
    --save_path "$WORK/metric_pytorch.json" --show-dir "$WORK/show/pytorch"
step "where PyTorch and the backend disagree (pictures)"
"$PY" -m common.disagreement "$WORK/show/pytorch" "$WORK/show/onnxruntime" --out "$WORK/disagreement"
"$PY" -m common.pack_summary --pack "$PACK" --work "$WORK" --metric mIoU --key miou --classes 21 --data "$DATA_LABEL"
