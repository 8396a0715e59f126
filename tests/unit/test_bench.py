"""bench/: FLOP counting, the registry's command lines against the packs' own parsers, and
the goal verdicts of the report. No timing is asserted (benchmarks are not tests)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bench.flops import count_flops
from bench.registry import PACK_BENCHES, DataSet
from bench.report import goals_section, tuning_section, write_report
from common.pipeline.packs import pack_module


def _tiny_graph(path: Path) -> None:
    """One node of each counted kind, with hand-computable FLOPs."""
    def weight(name, shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape, np.ones(int(np.prod(shape)), np.float32))

    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["yc"], pads=[1, 1, 1, 1], group=1),
        helper.make_node("Conv", ["x", "wg"], ["yg"], group=3),  # grouped 1x1, stride 1
        helper.make_node("Gemm", ["v", "wm"], ["ym"], transB=1),
        helper.make_node("MatMul", ["a", "b"], ["yb"]),
        helper.make_node("ConvTranspose", ["t", "wt"], ["yt"], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
                helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 16]),
                helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 4, 6]),
                helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4, 4, 4])],
        outputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("yc", "yg", "ym", "yb", "yt")],
        initializer=[weight("wc", [4, 3, 3, 3]), weight("wg", [6, 1, 1, 1]), weight("wm", [5, 16]),
                     weight("wt", [4, 2, 2, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))


def test_flops_of_each_counted_op(tmp_path):
    path = tmp_path / "tiny.onnx"
    _tiny_graph(path)
    result = count_flops(path)
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3) + 2 * (6 * 8 * 8) * 1  # full 3x3 conv + grouped 1x1
    assert result["per_op"] == {"Conv": conv, "Gemm": 2 * 5 * 16, "MatMul": 2 * (2 * 3 * 6) * 4,
                                "ConvTranspose": 2 * (4 * 4 * 4) * (2 * 2 * 2)}
    assert result["unresolved_nodes"] == 0 and result["total"] == sum(result["per_op"].values())


def _argv_of_every_command(entry, tmp: Path):
    hw = entry.quick_hw
    data = DataSet(entry.quick_series.image_hw, entry.quick_series.input_hw)
    for option in entry.output_options.values():
        yield from entry.export(tmp / "w.ckpt", tmp / "m.onnx", hw, option)
    yield entry.preprocess(tmp / "data", tmp / "bins", 2, data.input_hw)
    yield from entry.before_postprocess(tmp / "data", tmp, data.input_hw)
    yield entry.postprocess(tmp / "data", tmp / "result", tmp, 2, data.input_hw)


@pytest.mark.parametrize("pack", sorted(PACK_BENCHES))
def test_registry_commands_parse_with_the_packs_own_parsers(pack, tmp_path):
    """A renamed script or flag in a pack breaks this test, not the 25-minute benchmark."""
    entry = PACK_BENCHES[pack]
    for script in _argv_of_every_command(entry, tmp_path):
        module = pack_module(pack, script.name)
        args = module.parse_args(script.argv)
        if "--workers" in script.argv:
            assert args.workers == 2, f"{pack}/{script.name}.py did not take --workers"
    assert hasattr(pack_module(pack, "model"), "write_demo_checkpoint")


def _pack_result(ratio: float, post_small: float, post_large: float) -> dict:
    def prepost(images, peak):
        step = {"ms_per_image": 10.0, "img_per_s": 100.0, "peak_rss_mib": peak, "peak_rss_workers_mib": 0.0,
                "rss_after_imports_mib": 50.0, "seconds": images / 100.0}
        return {"label": "series", "images": images, "image_hw": "real sizes", "workers": 1,
                "preprocess": dict(step, peak_rss_mib=60.0), "postprocess": step}
    side = {"img_per_s": 1.0, "latency_ms_median": 1000.0, "latency_ms_min": 900.0, "runs": 3,
            "achieved_gflops": 100.0}
    return {"pack": "RefineNet", "input_hw": [500, 500], "threads": 2, "seconds": 1.0, "goal_ratio": 1.5,
            "load_average_at_start": [0.1, 0, 0], "load_average_at_end": [0.1, 0, 0],
            "guide_batches": [1, 16], "batches_run": [1], "guide_ms_per_image": {"postprocess": 118.0},
            "inference": [{"batch": 1, "onnxruntime": dict(side, img_per_s=ratio, achieved_gflops=100.0 * ratio),
                           "pytorch": side, "ratio_ort_over_torch": ratio, "parity": []},
                          {"batch": 16, "skipped": "predicted 400 s"}],
            "prepost": [prepost(10, post_small), prepost(500, post_large)]}


def test_goal_verdicts_say_by_how_much_a_goal_is_missed():
    rows = "\n".join(goals_section({"RefineNet": _pack_result(1.2, 80.0, 400.0)}, peak=400.0))
    assert "| 1.20x | missed by 0.30x (80% of the goal); PyTorch already runs at 25% of the measured matmul peak " \
           "and ONNX Runtime at 30%: 1.5x would need ONNX Runtime at 38% of it |" in rows
    assert "ORT achieved FLOP/s >= 50% of peak | 30% (bs1) | missed by 20% of peak" in rows
    assert "118 ms/img | 10.0 ms/img, 11.8x | met" in rows
    assert "+320 MiB from 10 to 500 images | missed" in rows
    met = "\n".join(goals_section({"RefineNet": _pack_result(1.6, 80.0, 81.0)}, peak=100.0))
    assert "| 1.60x | met |" in met and "+1 MiB from 10 to 500 images | met" in met


def test_report_lists_unavailable_packs_and_skipped_batches(tmp_path):
    (tmp_path / "RefineNet.json").write_text(json.dumps(_pack_result(1.6, 80.0, 81.0)))
    (tmp_path / "Wseg.json").write_text(json.dumps({"pack": "Wseg", "status": "not available yet: no entry"}))
    out = tmp_path / "RESULTS.md"
    write_report(tmp_path, out, ["RefineNet", "Wseg", "PointRend"])
    text = out.read_text()
    assert "### Wseg\n\nnot available yet: no entry" in text
    assert "### PointRend\n\nnot measured yet" in text
    assert "| 16 | 0 | skipped: predicted 400 s |" in text


def test_tuning_speed_ups_compare_best_runs():
    tuning = {"onnx": "/w/m.onnx", "batch": 1, "threads": 2, "rounds": 3, "baseline": "base",
              "variants": {"base": {"seconds": [3.0, 1.0, 2.0], "latency_ms_median": 2000.0},
                           "faster": {"seconds": [0.5, 4.0, 4.0], "latency_ms_median": 4000.0,
                                      "parity_vs_baseline": [{"max_rel": 1e-7}]},
                           "broken": {"error": "cannot load"}}}
    text = "\n".join(tuning_section(tuning))
    assert "| base | 2,000 | 1,000 | 1.00x | n/a | 3,000 1,000 2,000 |" in text
    assert "| faster | 4,000 | 500 | 2.00x | 1.0e-07 | 500 4,000 4,000 |" in text
    assert "| broken | failed |" in text


def test_a_missed_preprocess_goal_states_the_disk_floor_and_what_workers_reach():
    result = _pack_result(1.6, 80.0, 81.0)
    result["guide_ms_per_image"] = {"preprocess": 22.0}
    for row in result["prepost"]:
        row["preprocess"]["bin_bytes_per_image"] = 3_000_000
    parallel = json.loads(json.dumps(result["prepost"][-1]))
    parallel["workers"], parallel["preprocess"]["ms_per_image"] = 2, 4.0
    result["prepost"].append(parallel)
    rows = "\n".join(goals_section({"RefineNet": result}, peak=100.0, disk_mb_s=500.0))
    assert ("| 10.0 ms/img, 2.2x; 4.0 ms with 2 workers | met with 2 workers (5.5x); one worker: 2.2x |") in rows
    result["prepost"].pop()
    rows = "\n".join(goals_section({"RefineNet": result}, peak=100.0, disk_mb_s=500.0))
    assert "writing its 3.0 MB of bins per image alone takes 6.0 ms at this disk's sustained 500 MB/s" in rows
