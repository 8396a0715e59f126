"""Running models: backends (ONNX Runtime, PyTorch, ais_bench), the runner, ONNX graphs, export, ATC."""
