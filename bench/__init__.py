"""segzoo benchmarks (not tests): `python3 -m bench [--quick] [--packs ...]` from the repo root.

Per pack, at its guide's real input shape: ONNX Runtime vs PyTorch eager throughput and
latency (same threads, the guide's batch sizes), FLOPs counted from the ONNX graph and the
achieved fraction of the machine's measured matmul peak, pre/postprocess speed and peak
memory as the dataset grows, output bytes per image; then ONNX Runtime session/export
variants. Figures land in bench/results/<pack>.json and bench/RESULTS.md.
"""
