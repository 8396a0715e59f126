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
