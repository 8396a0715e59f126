#!/usr/bin/env bash
# Wseg end to end with the commands of Wseg/README.md, then the PyTorch reference run on the
# same bins and one summary row. Usage: see common/pack_lib.sh.
set -euo pipefail
PACK=Wseg
source "$(dirname "${BASH_SOURCE[0]}")/../common/pack_lib.sh"
parse_pack_args "$@"
cd "$REPO_ROOT/$PACK"

# The guide pads every variant to 1024x1024: about 5.4 TFLOP per input and 8 inputs per image
# (measured on 2 busy cores: 44 s per input with ONNX Runtime, 72 s with PyTorch, so about 20
# minutes per image for both), so the full-size run does one image by default. --quick pads to
# 128 with 48x64 images (the 2.0 scale must fit the pad).
SIZE=1024; [ "$QUICK" = 1 ] && SIZE=128
COUNT=${COUNT:-$([ "$QUICK" = 1 ] && echo 2 || echo 1)}
if [ -z "$DATA_ROOT" ]; then
    step "synthetic VOC2012 ($COUNT images)"
    if [ "$QUICK" = 1 ]; then
        "$PY" -m common.synth voc --out "$WORK/data" --count "$COUNT" --height 48 --width 64
    else
        "$PY" -m common.synth voc --out "$WORK/data" --count "$COUNT"
    fi
    DATA_ROOT="$WORK/data"
fi
VOC2012=""
for candidate in voc/VOCdevkit/VOC2012 VOCdevkit/VOC2012 VOC2012 .; do
    [ -d "$DATA_ROOT/$candidate/ImageSets/Segmentation" ] && { VOC2012="$DATA_ROOT/$candidate"; break; }
done
[ -n "$VOC2012" ] || { echo "error: $DATA_ROOT: no VOCdevkit/VOC2012 below it" >&2; exit 2; }
# The first COUNT ids of VOC's val list (the same 1449 images as upstream's val_voc.txt).
head -n "$COUNT" "$VOC2012/ImageSets/Segmentation/val.txt" > "$WORK/val_list.txt"
CKPT=$(weights_file model_enc_e020Xs0.928.pth)

step "preprocess (wseg_preprocess.py)"
"$PY" wseg_preprocess.py "$DATA_ROOT" "$WORK/val_list.txt" "$WORK/prep_data" --pad-size "$SIZE"
step "export to ONNX (wseg_pth2onnx.py)"
"$PY" wseg_pth2onnx.py "$CKPT" "$WORK/model/wideresnet_dybs.onnx" --input-size "$SIZE"
step "graph fix (fix_softmax_transpose.py)"
"$PY" fix_softmax_transpose.py "$WORK/model/wideresnet_dybs.onnx" "$WORK/model/wideresnet_dybs_fix.onnx"
step "ATC (Ascend only)"
"$PY" -m common.atc --model "$WORK/model/wideresnet_dybs_fix.onnx" --output "$WORK/model/wideresnet_bs1" \
    --input_shape "image:1,3,$SIZE,$SIZE" --log error
step "inference (ONNX Runtime)"
"$PY" -m common.infer --model "$WORK/model/wideresnet_dybs_fix.onnx" --input "$WORK/prep_data" \
    --output "$WORK/result" --output_dirname onnxruntime --outfmt BIN --batchsize 1
step "postprocess and accuracy (wseg_postprocess.py, eval_seg.py)"
"$PY" wseg_postprocess.py "$DATA_ROOT" "$WORK/val_list.txt" "$WORK/result/onnxruntime" "$WORK/output/onnxruntime" \
    --show-dir "$WORK/show/onnxruntime"
"$PY" eval_seg.py --data "$DATA_ROOT" --filelist "$WORK/val_list.txt" --masks "$WORK/output/onnxruntime" \
    --save_path "$WORK/metric_onnxruntime_raw.json"
"$PY" eval_seg.py --data "$DATA_ROOT" --filelist "$WORK/val_list.txt" --masks "$WORK/output/onnxruntime/crf" \
    --save_path "$WORK/metric_onnxruntime.json"

[ "$SKIP_PYTORCH" = 1 ] && exit 0
step "reference: PyTorch on the same bins"
"$PY" -m common.torch_infer --model "$WORK/model/wideresnet_dybs_fix.onnx" --checkpoint "$CKPT" \
    --input "$WORK/prep_data" --output "$WORK/result" --output_dirname pytorch
"$PY" wseg_postprocess.py "$DATA_ROOT" "$WORK/val_list.txt" "$WORK/result/pytorch" "$WORK/output/pytorch" \
    --show-dir "$WORK/show/pytorch"
"$PY" eval_seg.py --data "$DATA_ROOT" --filelist "$WORK/val_list.txt" --masks "$WORK/output/pytorch" \
    --save_path "$WORK/metric_pytorch_raw.json"
"$PY" eval_seg.py --data "$DATA_ROOT" --filelist "$WORK/val_list.txt" --masks "$WORK/output/pytorch/crf" \
    --save_path "$WORK/metric_pytorch.json"
step "where PyTorch and the backend disagree (pictures)"
"$PY" -m common.disagreement "$WORK/show/pytorch" "$WORK/show/onnxruntime" --out "$WORK/disagreement"
"$PY" -m common.pack_summary --pack "$PACK" --work "$WORK" --metric "mIoU (CRF)" --key miou --data "$DATA_LABEL" \
    --inputs-per-image 8 --classes none,21
