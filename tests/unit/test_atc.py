import pytest

from common.runtime.atc import atc_command, parse_shape_arg, soc_version_from_npu_smi
from common.cli import UserError
from helpers import run_script

GEN_A = """+-------------------+-----------------+------------------------------------------------------+
| NPU     Name      | Health          | Power(W)     Temp(C)                                 |
| Chip    Device    | Bus-Id          | AICore(%)    Memory-Usage(MB)                        |
+===================+=================+======================================================+
| 0       310       | OK              | 12.8         45                                      |
| 0       0         | 0000:05:00.0    | 0            2621 / 8192                             |
+===================+=================+======================================================+
"""
GEN_B = """| npu-smi 22.0.2                   Version: 22.0.2                                      |
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| 0     310P3               | OK            | NA          41                0    / 0             |
| 0     0                   | 0000:86:00.0  | 0           1411 / 21527                            |
"""
GEN_C = """| 2144   910B3            | Warning       | 93.2        37                0    / 0             |
| 0                         | 0000:C1:00.0  | 0           0    / 0          41697/ 65536         |
"""


@pytest.mark.parametrize("table, soc", [(GEN_A, "Ascend310"), (GEN_B, "Ascend310P3"), (GEN_C, "Ascend910B3"),
                                        ("| 0   Ascend910 | OK | 1 2 |", "Ascend910")])
def test_soc_version_from_each_npu_smi_generation(table, soc):
    assert soc_version_from_npu_smi(table) == soc


def test_no_chip_row_gives_none():
    assert soc_version_from_npu_smi("command not found") is None


def test_command_matches_the_guide():
    command = atc_command("model/RefineNet_910.onnx", "model/RefineNet_910_bs1", {"input": [1, 3, 500, 500]},
                          "Ascend310P3", log="debug")
    assert command == ["atc", "--framework=5", "--model=model/RefineNet_910.onnx",
                       "--output=model/RefineNet_910_bs1", "--input_format=NCHW",
                       "--input_shape=input:1,3,500,500", "--log=debug", "--soc_version=Ascend310P3"]
    with_nodes = atc_command("m.onnx", "m", {"image": [1, 3, 8, 8]}, "Ascend310", out_nodes=["Conv_1:0", "Add_2:0"])
    assert with_nodes[-1] == "--out_nodes=Conv_1:0;Add_2:0"


def test_shape_argument_parsing():
    assert parse_shape_arg("a:1,3,4,4;b:1,2") == {"a": [1, 3, 4, 4], "b": [1, 2]}
    with pytest.raises(UserError):
        parse_shape_arg("a:1,x")


def test_without_atc_the_cli_says_so_in_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    value = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 500, 500])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 500, 500])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g", [value], [output])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))  # the CLI checks the input names
    result = run_script(None, "common.atc", "--model", tmp_path / "m.onnx", "--output", "m_bs1",
                        "--input_shape", "input:1,3,500,500", "--soc_version", "Ascend310P3")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"atc --framework=5 --model={tmp_path}/m.onnx")
    assert "ATC is absent" in lines[1] and "ONNX Runtime" in lines[1]


def _tiny_model(path):
    import onnx
    from onnx import TensorProto, helper
    value = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"], name="/relu/Relu")], "g",
                              [value], [output])
    onnx.save(helper.make_model(graph), str(path))


def test_precision_mode_and_keep_dtype_appear_in_the_printed_command(tmp_path):
    _tiny_model(tmp_path / "m.onnx")
    (tmp_path / "keep.cfg").write_text("/relu/Relu\nOpType::Relu\n")
    result = run_script(None, "common.atc", "--model", tmp_path / "m.onnx", "--output", "m_bs1",
                        "--input_shape", "input:1,3,8,8", "--soc_version", "Ascend310P3",
                        "--precision_mode", "allow_fp32_to_fp16", "--keep_dtype", tmp_path / "keep.cfg")
    first = result.stdout.splitlines()[0]
    assert "--precision_mode=allow_fp32_to_fp16" in first and f"--keep_dtype={tmp_path / 'keep.cfg'}" in first


@pytest.mark.parametrize("lines, fragments", [
    ("/relu/Relu\n/conv/Conv\n", ("keep.cfg:2", "'/conv/Conv' is not a node")),
    ("OpType::Conv2D\n", ("keep.cfg:1", "OpType::Conv2D names no operator type")),
    (None, ("keep.cfg", "keep_dtype file not found")),
])
def test_a_keep_dtype_file_that_does_not_fit_the_model_is_one_line(tmp_path, lines, fragments):
    from helpers import error_lines
    _tiny_model(tmp_path / "m.onnx")
    if lines is not None:
        (tmp_path / "keep.cfg").write_text(lines)
    result = run_script(None, "common.atc", "--model", tmp_path / "m.onnx", "--output", "m_bs1",
                        "--input_shape", "input:1,3,8,8", "--soc_version", "Ascend310P3",
                        "--keep_dtype", tmp_path / "keep.cfg", check=False)
    lines_out = error_lines(result)
    assert result.returncode == 2 and len(lines_out) == 1
    assert all(fragment in lines_out[0] for fragment in fragments), lines_out
