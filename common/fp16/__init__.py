"""Predict on the CPU what ATC's float16 precision modes do to a model, before an NPU is at hand.

modes       what force_fp16 / allow_fp32_to_fp16 / must_keep_origin_dtype lower, as CANN documents
keep_dtype  ATC `--keep_dtype` files: read, check against a model, write
emulate     the ONNX rewrite that rounds where the NPU stores float16, and its sessions
compare     per-tensor statistics and per-output verdicts against the float32 run
analysis    one model on one set of bins: reference outputs, emulated variants, statistics
search      a small keep set meeting a tolerance (range rule, bisection, pruning)
openvino_check  a second opinion from OpenVINO's real f16 execution on the CPU
report      the JSON report and its printed lines

The command is `python3 -m common.precision`.
"""
