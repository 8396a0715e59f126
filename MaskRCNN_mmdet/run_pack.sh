#!/usr/bin/env bash
# MaskRCNN_mmdet end to end with the commands of MaskRCNN_mmdet/README.md, then the PyTorch
# reference run on the same bins and one summary row. Usage: see common/pack_lib.sh.
set -euo pipefail
PACK=MaskRCNN_mmdet
source "$(dirname "${BASH_SOURCE[0]}")/../common/pack_lib.sh"
parse_pack_args "$@"
cd "$REPO_ROOT/$PACK"

# The guide's canvas is 1216x1216 (about 30 s per image per backend on a 2-core CPU); --quick
# uses 128x128, enough to exercise every step.
SIZE=1216; [ "$QUICK" = 1 ] && SIZE=128
COUNT=${COUNT:-3}
if [ -z "$DATA_ROOT" ]; then
    step "synthetic COCO val2017 ($COUNT images)"
    "$PY" -m common.synth coco --out "$WORK/data/coco" --count "$COUNT"
    DATA_ROOT="$WORK/data"
fi
COCO="$DATA_ROOT/coco"  # coco/val2017 and coco/annotations/instances_val2017.json
CKPT=$(weights_file mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth)
ONNX="$WORK/model/maskrcnn_r50_fpn_1x.onnx"

step "数据预处理 (preprocess)"
"$PY" mmdet_preprocess.py --image_src_path="$COCO/val2017" --bin_file_path="$WORK/val2017_bin" \
    --model_input_height=$SIZE --model_input_width=$SIZE
step "导出onnx (export)"
"$PY" mmdet_pth2onnx.py configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py "$CKPT" --output-file "$ONNX" \
    --shape $SIZE $SIZE
"$PY" label_to_int32.py "$ONNX"
step "ATC (Ascend only)"
"$PY" -m common.atc --model "$ONNX" --output "$WORK/model/maskrcnn_r50_fpn_1x" \
    --input_shape "input:1,3,$SIZE,$SIZE" --log info
step "推理 (inference, ONNX Runtime)"
"$PY" -m common.infer --model "$ONNX" --input "$WORK/val2017_bin" --output "$WORK/result" \
    --output_dirname onnxruntime --batchsize 1
step "精度验证 (postprocess)"
"$PY" get_info.py jpg "$COCO/val2017" "$WORK/val2017_jpg.info"
"$PY" mmdet_postprocess.py --bin_data_path="$WORK/result/onnxruntime" --test_annotation="$WORK/val2017_jpg.info" \
    --val2017_json_path="$COCO/annotations/instances_val2017.json" --det_results_path="$WORK/det_onnxruntime" \
    --net_out_num=3 --net_input_height=$SIZE --net_input_width=$SIZE --ifShowDetObj \
    --save_path "$WORK/metric_onnxruntime.json"

[ "$SKIP_PYTORCH" = 1 ] && exit 0
step "reference: PyTorch on the same bins"
"$PY" -m common.torch_infer --model "$ONNX" --checkpoint "$CKPT" --input "$WORK/val2017_bin" \
    --output "$WORK/result" --output_dirname pytorch
"$PY" mmdet_postprocess.py --bin_data_path="$WORK/result/pytorch" --test_annotation="$WORK/val2017_jpg.info" \
    --val2017_json_path="$COCO/annotations/instances_val2017.json" --det_results_path="$WORK/det_pytorch" \
    --net_out_num=3 --net_input_height=$SIZE --net_input_width=$SIZE --ifShowDetObj --save_path "$WORK/metric_pytorch.json"
"$PY" -m common.pack_summary --pack "$PACK" --work "$WORK" --metric "bbox mAP" --key bbox.AP \
    --output-dtypes float32,int32,float32 --data "$DATA_LABEL"
