"""common.fp16 / python3 -m common.precision: the float16 emulation, its report and the keep-list search."""
import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from common import precision
from common.files.bins import write_bin
from common.cli import UserError, run_script
from common.fp16.compare import TensorStats
from common.fp16.emulate import analyse, emulate, fp16_nodes, make_session
from common.fp16.keep_dtype import resolve_keep_dtype, write_keep_dtype
from common.fp16.modes import ALLOW_FP32_TO_FP16, FORCE_FP16, INF_NAN, MUST_KEEP_ORIGIN_DTYPE, SATURATION
from helpers import expect_one_line, run_cli

F = TensorProto.FLOAT


def make_model(nodes, inputs, outputs, initializers=(), opset=11):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model, feeds):
    return make_session(model).run(None, feeds)


def round16(values):
    with np.errstate(over="ignore"):  # inf past 65504 is what float16 gives
        return np.asarray(values, np.float32).astype(np.float16).astype(np.float32)


# ---- a graph whose sum passes 65504 for a large input scale, and stays in range for a small one

def sum_graph(scale: float):
    """x -> conv (1x1, weight `scale`) -> sum = conv + conv -> scale_down = sum / 3 -> head conv."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "c"], ["s"], name="sum"),
             helper.make_node("Div", ["s", "three"], ["d"], name="scale_down"),
             helper.make_node("Conv", ["d", "w_head"], ["y"], name="head")]
    weights = {"w": np.full((4, 3, 1, 1), scale, np.float32),
               "three": np.array(3.0, np.float32),
               "w_head": rng.standard_normal((5, 4, 1, 1)).astype(np.float32) / 1000}
    return make_model(nodes, [helper.make_tensor_value_info("x", F, ["n", 3, 6, 6])],
                      [helper.make_tensor_value_info("y", F, ["n", 5, 6, 6])], weights)


def write_case(tmp_path, model, samples=2, shape=(3, 6, 6), low=1.0, high=2.0):
    onnx.save(model, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    for index in range(samples):
        write_bin(tmp_path / "bins" / f"s{index}.bin", rng.uniform(low, high, shape).astype(np.float32))
    return tmp_path / "m.onnx", tmp_path / "bins"


def cli(capsys, *argv):
    code, lines = run_cli(precision, *argv, capsys=capsys)
    return code, lines


def test_a_sum_past_65504_is_flagged_at_the_sum_and_its_keep_list_fixes_it(tmp_path, capsys):
    # conv values: 3 channels * x (1..2) * 7000 = 21000..42000 fit float16; their sum 42000..84000 does not.
    model_path, bins = write_case(tmp_path, sum_graph(7000.0))
    code, _ = cli(capsys, "--model", model_path, "--input", bins, "--output", tmp_path / "r", "--no-openvino")
    assert code == 0
    report = json.loads((tmp_path / "r" / "precision_report.json").read_text())
    assert not report["emulated"]["meets_tolerance"]
    summary = report["tensors_summary"]
    assert summary["first_beyond_fp16_max"]["node"] == "sum"
    assert summary["first_departing"]["node"] == "sum"
    assert [e["node"] for e in summary["fp16_overflow"]][:1] == ["sum"]
    by_node = {entry["node"]: entry for entry in report["tensors"]}
    assert by_node["conv"]["beyond_fp16_max"] == 0 and by_node["conv"]["cosine"] > 0.999
    # The sum stays float32, and so must the division that reads it (rounded it would be inf).
    assert (tmp_path / "r" / "keep_dtype.cfg").read_text() == "sum\nscale_down\n"
    assert report["with_keep_dtype"]["meets_tolerance"]

    code, _ = cli(capsys, "--model", model_path, "--input", bins, "--output", tmp_path / "r2",
                  "--keep_dtype", tmp_path / "r" / "keep_dtype.cfg", "--no-openvino", "--no-search")
    again = json.loads((tmp_path / "r2" / "precision_report.json").read_text())
    assert code == 0 and again["emulated"]["meets_tolerance"]
    assert again["kept_nodes"] == ["sum", "scale_down"]
    assert again["tensors_summary"]["fp16_overflow"] == []


def test_a_safe_graph_gets_an_empty_keep_list(tmp_path, capsys):
    model_path, bins = write_case(tmp_path, sum_graph(0.5))
    code, _ = cli(capsys, "--model", model_path, "--input", bins, "--output", tmp_path / "r", "--no-openvino")
    report = json.loads((tmp_path / "r" / "precision_report.json").read_text())
    assert code == 0 and report["emulated"]["meets_tolerance"]
    assert (tmp_path / "r" / "keep_dtype.cfg").read_text() == ""
    assert report["search"]["evaluations"] == 1
    assert report["tensors_summary"]["beyond_fp16_max"] == [] and report["tensors_summary"]["first_departing"] is None


def test_saturation_clips_instead_of_inf():
    model = sum_graph(7000.0)
    x = np.full((1, 3, 6, 6), 2.0, np.float32)  # conv 42000, sum 84000
    facts = analyse(model, {"x": x.shape})

    def probe(overflow):
        return run(_expose(emulate(model, facts, FORCE_FP16, (), overflow), "s"), {"x": x})[1]
    assert np.isinf(probe(INF_NAN)).all()
    assert (probe(SATURATION) == 65504.0).all()


def _expose(model, name):
    model.graph.output.append(helper.make_tensor_value_info(name, F, None))
    return model


# ---- one conv against a hand computation ------------------------------------------------

def test_one_conv_equals_fp16_inputs_with_fp32_accumulation():
    """A 1x1 conv over 256 channels: 4096.3 * 1 + 255 * (1.0001 * 1.0002) + bias 0.3.

    float16 inputs: 4096, 1, 1, bias 0.2998046875; summed in float32: 4351.2998046875, exact;
    rounded to float16 (ulp 4 there): 4352. Summed in float16 it would stay at 4096 (4096 + 1
    rounds back to 4096); in float32 without rounding it is 4351.68.
    """
    x = np.full((1, 256, 1, 1), 1.0001, np.float32)
    x[0, 0] = 4096.3
    w = np.full((1, 256, 1, 1), 1.0002, np.float32)
    w[0, 0] = 1.0
    b = np.array([0.3], np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")],
                       [helper.make_tensor_value_info("x", F, [1, 256, 1, 1])],
                       [helper.make_tensor_value_info("y", F, [1, 1, 1, 1])], {"w": w, "b": b})
    xr, wr, br = round16(x).astype(np.float64), round16(w).astype(np.float64), round16(b).astype(np.float64)
    hand = round16(np.float32((xr * wr).sum() + br[0]))
    fp16_accumulation = np.float16(0)
    for product in (xr * wr).ravel():
        fp16_accumulation = np.float16(fp16_accumulation + np.float16(product))
    emulated = run(emulate(model, analyse(model, {"x": x.shape}), FORCE_FP16), {"x": x})[0]
    assert hand == 4352.0 and emulated.item() == hand
    assert float(fp16_accumulation) == 4096.0
    # float32 without rounding: 4351.68 exactly, 4351.70 after ONNX Runtime's float32 sums at 4096
    assert run(model, {"x": x})[0].item() == pytest.approx(4351.68, abs=0.05)


def test_a_random_conv_matches_the_hand_computation_to_the_last_float16_bit():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")],
                       [helper.make_tensor_value_info("x", F, [1, 3, 5, 5])],
                       [helper.make_tensor_value_info("y", F, [1, 2, 3, 3])], {"w": w, "b": b})
    xr, wr, br = (round16(v).astype(np.float64) for v in (x, w, b))
    patches = np.lib.stride_tricks.sliding_window_view(xr[0], (3, 3), axis=(1, 2))  # (3, 3, 3, kh, kw)
    hand = round16(np.einsum("chwij,ocij->ohw", patches, wr) + br[:, None, None])[None]
    emulated = run(emulate(model, analyse(model, {"x": x.shape}), FORCE_FP16), {"x": x})[0]
    # float32 (ONNX Runtime's order) and float64 sums differ by ~1e-7 relative, far below
    # float16's 1e-3: the rounded results are equal unless a sum sits on a rounding boundary.
    assert np.array_equal(emulated, hand)
    assert not np.array_equal(emulated, run(model, {"x": x})[0])


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float32, (7,), elements=st.floats(-1e6, 1e6, width=32)))
def test_rounding_in_the_graph_is_numpys_float16_conversion(values):
    model = make_model([helper.make_node("Add", ["x", "zero"], ["y"], name="add")],
                       [helper.make_tensor_value_info("x", F, [7])], [helper.make_tensor_value_info("y", F, [7])],
                       {"zero": np.zeros(1, np.float32)})
    emulated = run(emulate(model, analyse(model, {"x": (7,)}), FORCE_FP16), {"x": values})[0]
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(emulated, expected)


# ---- what stays untouched -----------------------------------------------------------------

def shape_graph():
    """y = Reshape(Relu(x), [1, H*W]) with H*W computed in float from Shape (2049 is not a
    float16 value: rounded it would be 2048 and the reshape would fail), plus a Resize whose
    float scales are a parameter and an ArgMax (int64 output)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "two"], ["h"], name="take_h", axis=0),
        helper.make_node("Cast", ["h"], ["h_float"], name="h_to_float", to=F),
        helper.make_node("Mul", ["h_float", "one"], ["h_scaled"], name="h_times_one"),
        helper.make_node("Cast", ["h_scaled"], ["h_int"], name="h_to_int", to=TensorProto.INT64),
        helper.make_node("Concat", ["one_int", "h_int"], ["new_shape"], name="new_shape", axis=0),
        helper.make_node("Reshape", ["r", "new_shape"], ["flat"], name="flatten"),
        helper.make_node("Resize", ["x", "roi", "scales"], ["big"], name="resize", mode="nearest"),
        helper.make_node("ArgMax", ["big"], ["cls"], name="argmax", axis=2, keepdims=0),
    ]
    inits = {"two": np.array([2], np.int64), "one": np.array([1.0], np.float32),
             "one_int": np.array([1], np.int64), "roi": np.zeros(0, np.float32),
             "scales": np.array([1, 1, 1.0001, 1], np.float32)}
    return make_model(nodes, [helper.make_tensor_value_info("x", F, [1, 1, 2049, 1])],
                      [helper.make_tensor_value_info("flat", F, None),
                       helper.make_tensor_value_info("cls", TensorProto.INT64, None)], inits)


def test_integer_and_shape_subgraph_stay_untouched():
    model = shape_graph()
    facts = analyse(model, {"x": (1, 1, 2049, 1)})
    lowered = fp16_nodes(model, facts, FORCE_FP16)
    assert lowered == {"relu", "flatten", "resize", "argmax"}
    emulated = emulate(model, facts, FORCE_FP16)
    by_name = {node.name: node for node in emulated.graph.node}
    for name in ("shape", "take_h", "h_to_float", "h_times_one", "h_to_int", "new_shape"):
        assert by_name[name] == next(n for n in model.graph.node if n.name == name)
    assert list(by_name["resize"].input[1:]) == ["roi", "scales"]  # parameters, not rounded
    x = np.linspace(-3, 3, 2049, dtype=np.float32).reshape(1, 1, 2049, 1) * 1.0003
    flat, cls = run(emulated, {"x": x})
    np.testing.assert_array_equal(flat, round16(np.maximum(x, 0)).reshape(1, 2049))
    assert cls.dtype == np.int64


def test_allow_fp32_to_fp16_lowers_matrix_ops_only_and_must_keep_none():
    model = sum_graph(1.0)
    facts = analyse(model, {"x": (1, 3, 6, 6)})
    assert fp16_nodes(model, facts, ALLOW_FP32_TO_FP16) == {"conv", "head"}
    assert fp16_nodes(model, facts, MUST_KEEP_ORIGIN_DTYPE) == set()
    x = np.random.default_rng(2).uniform(1, 2, (1, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(run(emulate(model, facts, MUST_KEEP_ORIGIN_DTYPE), {"x": x})[0], run(model, {"x": x})[0])


# ---- keep_dtype files ----------------------------------------------------------------------

def test_keep_list_is_read_back_and_honoured(tmp_path):
    model = sum_graph(1.0)
    write_keep_dtype(tmp_path / "keep.cfg", ["scale_down"])
    keep = resolve_keep_dtype(tmp_path / "keep.cfg", model.graph)
    assert keep == {"scale_down"}
    facts = analyse(model, {"x": (1, 3, 6, 6)})
    assert "scale_down" not in fp16_nodes(model, facts, FORCE_FP16, keep)
    x = np.random.default_rng(3).uniform(1, 2, (1, 3, 6, 6)).astype(np.float32) * 1.0003
    kept = _expose(emulate(model, facts, FORCE_FP16, keep), "d")
    lowered = _expose(emulate(model, facts, FORCE_FP16), "d")
    s = run(_expose(emulate(model, facts, FORCE_FP16), "s"), {"x": x})[1]
    d_kept, d_lowered = run(kept, {"x": x})[1], run(lowered, {"x": x})[1]
    np.testing.assert_array_equal(d_kept, s / np.float32(3.0))  # float32 division, not rounded
    np.testing.assert_array_equal(d_lowered, round16(s / np.float32(3.0)))
    assert not np.array_equal(d_kept, d_lowered)


def test_keep_dtype_op_types_use_ascend_ir_names(tmp_path):
    model = sum_graph(1.0)
    (tmp_path / "types.cfg").write_text("# comment\nOpType::Conv2D\n\n")
    assert resolve_keep_dtype(tmp_path / "types.cfg", model.graph) == {"conv", "head"}
    (tmp_path / "onnx_name.cfg").write_text("OpType::Conv\n")
    with pytest.raises(UserError, match=r"onnx_name.cfg:1: OpType::Conv .*OpType::Conv2D"):
        resolve_keep_dtype(tmp_path / "onnx_name.cfg", model.graph)


# ---- statistics ------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2 ** 31), st.floats(1.0, 3e5))
def test_stats_over_samples_equal_the_stats_of_all_values(samples, seed, scale):
    rng = np.random.default_rng(seed)
    refs = [(rng.standard_normal((3, 5)) * scale).astype(np.float32) for _ in range(samples)]
    emus = [round16(r) for r in refs]
    stats = TensorStats("t", "n", "Add", 0, True)
    for ref, emu in zip(refs, emus):
        stats.update(ref, emu, INF_NAN)
    ref_all, emu_all = np.concatenate(refs).ravel().astype(np.float64), np.concatenate(emus).ravel().astype(np.float64)
    assert stats.beyond_fp16_max == np.count_nonzero(np.abs(ref_all) > 65504)
    assert stats.fp16_overflow == np.count_nonzero(np.isinf(emu_all))
    if stats.fp16_overflow:
        assert stats.cosine is None and stats.departs
    else:
        expected = ref_all @ emu_all / np.sqrt((ref_all @ ref_all) * (emu_all @ emu_all))
        assert stats.cosine == pytest.approx(expected, abs=1e-12)
    assert stats.maximum == ref_all.max() and stats.minimum == ref_all.min()


def test_underflow_counts_subnormal_and_zeroed_values():
    ref = np.array([0.0, 1e-3, 3e-5, 1e-6, 2e-8, -1e-9], np.float32)
    stats = TensorStats("t", "n", "Mul", 0, True)
    stats.update(ref, round16(ref), INF_NAN)
    assert stats.subnormal_in_fp16 == 4  # 3e-5, 1e-6, 2e-8, 1e-9 are below 2^-14
    assert stats.zero_in_fp16 == 2 and np.count_nonzero(round16(ref)) == 3


# ---- the report and the command line -----------------------------------------------------

def test_report_fields_are_present_and_computed(tmp_path, capsys):
    model_path, bins = write_case(tmp_path, sum_graph(1.0))
    code = run_script(precision.main, precision.parse_args,
                      ["--model", str(model_path), "--input", str(bins), "--output", str(tmp_path / "r")])
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "precision_report.json").read_text())
    assert code == 0 and "outputs against float32" in printed
    assert report["samples"] == ["s0", "s1"] and report["nodes_fp16"] == 4 and report["nodes_total"] == 4
    (output,) = report["emulated"]["outputs"]
    assert output["name"] == "y" and 0.999 < output["cosine"] < 1.0 and output["max_abs_diff"] > 0
    assert output["class_changed"] is not None
    assert [entry["node"] for entry in report["tensors"]] == ["conv", "sum", "scale_down", "head"]
    for entry in report["tensors"]:
        assert entry["values"] == 2 * 6 * 6 * (5 if entry["node"] == "head" else 4)
        assert entry["min"] <= entry["max"] and entry["cosine"] is not None
    assert report["what_is_emulated"] and report["what_is_not_emulated"] and report["cpu"]["model_name"]
    assert report["timings"]["total_s"] > 0
    openvino = report["openvino_f16"]
    if "skipped" not in openvino:
        assert openvino["inference_precision"] == "f16"
        assert openvino["outputs"][0]["cosine"] > 0.99


def test_cli_bad_inputs_give_one_line(tmp_path, capsys):
    model_path, bins = write_case(tmp_path, sum_graph(1.0))
    expect_one_line(*cli(capsys, "--model", tmp_path / "none.onnx", "--input", bins), "none.onnx", "not found")
    write_bin(tmp_path / "short" / "s0.bin", np.zeros((3, 5, 6), np.float32))
    expect_one_line(*cli(capsys, "--model", model_path, "--input", tmp_path / "short"),
                    "s0.bin", "bytes, expected 432")
    (tmp_path / "keep.cfg").write_text("sum\nscale_dwn\n")
    expect_one_line(*cli(capsys, "--model", model_path, "--input", bins, "--keep_dtype", tmp_path / "keep.cfg"),
                    "keep.cfg:2", "'scale_dwn' is not a node", "closest: scale_down")
    expect_one_line(*cli(capsys, "--model", model_path, "--input", bins, "--keep_dtype", tmp_path / "keep.cfg",
                         "--precision_mode", "must_keep_origin_dtype"), "no effect")


def test_class_changes_within_float16_ties_are_counted_apart():
    from common.fp16.compare import OutputComparison, fp16_ulp
    assert fp16_ulp(10.3) == 2.0 ** -7 and fp16_ulp(1.0) == 2.0 ** -10
    # Two classes at 4 positions, largest magnitude 10 (ulp 2^-7): margins 0.01 (a tie within
    # 4 ulps = 0.031) and 2.0 (decisive); the other run flips both.
    reference = np.array([[[10.0, 5.0, 3.0, 1.0]], [[9.99, 3.0, 1.0, 3.0]]], np.float32)[None]  # (1, 2, 1, 4)
    other = reference.copy()
    other[0, :, 0, 0] = [9.98, 9.99]  # tie flipped
    other[0, :, 0, 1] = [3.0, 5.0]    # decisive flip
    counted = OutputComparison("y")
    counted.update(reference, other, class_axis=1, tie_ulps=4.0)
    assert counted.class_changed == 0.5 and counted.class_changed_beyond_ties == 0.25
    assert counted.tied_positions == 1
    strict = OutputComparison("y")
    strict.update(reference, other, class_axis=1, tie_ulps=0.0)
    assert strict.class_changed_beyond_ties == 0.5


def test_an_index_that_changes_is_the_first_departure(tmp_path, capsys):
    """1.0001 and 1.0002 are both 1.0 in float16: TopK picks index 0 instead of 1, and the
    departure starts at TopK's integer output, not at the float tensors after it."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["top", "index"], name="topk", axis=1),
             helper.make_node("Cast", ["index"], ["index_float"], name="as_float", to=F),
             helper.make_node("Add", ["index_float", "top"], ["y"], name="add")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", F, [1, 4])],
                       [helper.make_tensor_value_info("y", F, [1, 1])], {"k": np.array([1], np.int64)})
    onnx.save(model, str(tmp_path / "m.onnx"))
    write_bin(tmp_path / "bins" / "a.bin", np.array([1.0001, 1.0002, 0.5, 0.25], np.float32))
    code, _ = cli(capsys, "--model", tmp_path / "m.onnx", "--input", tmp_path / "bins", "--output", tmp_path / "r",
                  "--no-openvino", "--no-search")
    report = json.loads((tmp_path / "r" / "precision_report.json").read_text())
    first = report["tensors_summary"]["first_departing"]
    assert code == 0 and first["node"] == "topk" and first["changed_fraction"] == 1.0
    # (y, one value 2.0002 against 1.0, has cosine 1: a cosine sees direction, not scale)
    assert [e["tensor"] for e in report["tensors_summary"]["departing"]] == ["index", "index_float"]


def test_class_changes_only_for_class_logits_outputs():
    from common.fp16.compare import Tolerance, compare_outputs
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    boxes = rng.standard_normal((1, 10, 5)).astype(np.float32)
    flipped_logits, shuffled_boxes = logits[:, ::-1].copy(), boxes[:, ::-1].copy()
    auto = compare_outputs(["logits", "boxes"], [[logits, boxes]], [[flipped_logits, shuffled_boxes]], Tolerance())
    assert auto[0].class_changed > 0.5 and auto[1].class_changed is None  # rank 3: detections, no classes
    named = compare_outputs(["logits", "boxes"], [[logits, boxes]], [[flipped_logits, shuffled_boxes]],
                            Tolerance(class_outputs=("boxes",)))
    assert named[0].class_changed is None and named[1].class_changed is not None


def test_tensors_of_data_dependent_shape_are_measured_and_tracked(tmp_path, capsys):
    """NonZero's output shape depends on the values: shape inference leaves it unknown, the
    per-tensor pass measures it on the first sample and still reports it."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("NonZero", ["r"], ["where"], name="nonzero"),
             helper.make_node("Cast", ["where"], ["where_float"], name="as_float", to=F),
             helper.make_node("ReduceSum", ["where_float"], ["y"], name="total", keepdims=0)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", F, [1, 16])],
                       [helper.make_tensor_value_info("y", F, None)])
    model_path, bins = write_case(tmp_path, model, samples=2, shape=(16,), low=-1.0, high=1.0)
    code, _ = cli(capsys, "--model", model_path, "--input", bins, "--output", tmp_path / "r", "--no-openvino",
                  "--no-search", "--memory-mb", "1")
    report = json.loads((tmp_path / "r" / "precision_report.json").read_text())
    by_tensor = {entry["tensor"]: entry for entry in report["tensors"]}
    assert code == 0 and by_tensor["where"]["exact"] and by_tensor["where"]["values"] > 0
    assert by_tensor["where"]["changed_fraction"] == 0.0


def test_class_outputs_must_name_outputs(tmp_path, capsys):
    model_path, bins = write_case(tmp_path, sum_graph(1.0))
    expect_one_line(*cli(capsys, "--model", model_path, "--input", bins, "--class-outputs", "logits"),
                    "--class-outputs names logits", "the outputs are y")


def test_the_per_tensor_memory_budget_follows_the_available_memory(tmp_path):
    meminfo = tmp_path / "meminfo"
    for available_kb, expected_mb in ((15_000_000, 15_000_000 // 1024 // 3), (1_000_000, 1024), (90_000_000, 16384)):
        meminfo.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_kb} kB\n")
        assert precision.default_memory_mb(str(meminfo)) == expected_mb
    meminfo.write_text("MemTotal: 99999999 kB\n")  # no MemAvailable (old kernels): the fixed 1 GiB
    assert precision.default_memory_mb(str(meminfo)) == 1024
    assert precision.default_memory_mb(str(tmp_path / "absent")) == 1024
    assert precision.parse_args(["--model", "m.onnx", "--input", "bins", "--memory-mb", "64"]).memory_mb == 64
