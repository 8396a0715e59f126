"""Wseg export and fix_softmax_transpose.py: graph structure, opset semantics, ORT vs PyTorch."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from common.cli import UserError
from common.runtime.graph import read_metadata
from common.eval.parity import compare_arrays
from helpers import error_lines, run_script
from wseg_shared import (TEST_INPUT_SIDE, demo_checkpoint, export_script, exported_onnx, fix_script,
                         fixed_onnx, model)

REL_TOL = 1e-4


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    # Smooth colour fields with a zero border, like a padded preprocessed input.
    generator = torch.Generator().manual_seed(7)
    coarse = torch.randn(3, 3, 6, 6, generator=generator) * 1.5
    batch = torch.nn.functional.interpolate(coarse, size=(TEST_INPUT_SIDE,) * 2, mode="bilinear")
    batch[:, :, :, :9] = 0
    return batch.numpy()


@pytest.fixture(scope="module")
def torch_outputs(tmp_path_factory, images):
    network = model.load_pretrained(demo_checkpoint(tmp_path_factory))
    with torch.no_grad():
        cls, mask = network(torch.from_numpy(images))
    return cls.numpy(), mask.numpy()


def softmax_nodes(path):
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n for n in graph.node if n.op_type == "Softmax"], graph


def test_export_writes_the_transposed_softmax_at_opset_11(tmp_path_factory):
    path = exported_onnx(tmp_path_factory)
    loaded = onnx.load(str(path), load_external_data=False)
    assert [o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")] == [11]
    assert [i.name for i in loaded.graph.input] == ["image"]
    assert [o.name for o in loaded.graph.output] == ["cls", "mask"]
    assert loaded.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    softmaxes, graph = softmax_nodes(path)
    assert len(softmaxes) == 1
    assert sum(n.op_type == "Transpose" for n in graph.node) == 2
    assert read_metadata(loaded)["segzoo_pack"] == "Wseg"


def test_fixed_graph_has_one_channel_softmax_at_opset_13(tmp_path_factory):
    path = fixed_onnx(tmp_path_factory)
    softmaxes, graph = softmax_nodes(path)
    assert len(softmaxes) == 1 and softmaxes[0].attribute[0].i == 1
    assert not any(n.op_type == "Transpose" for n in graph.node)
    loaded = onnx.load(str(path), load_external_data=False)
    assert [o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert "segzoo_atc_only" not in read_metadata(loaded)


@pytest.mark.parametrize("which", ["exported", "fixed13"])
def test_onnx_runtime_matches_pytorch(tmp_path_factory, images, torch_outputs, which):
    path = exported_onnx(tmp_path_factory) if which == "exported" else fixed_onnx(tmp_path_factory)
    cls, mask = session(path).run(None, {"image": images})
    cls_diff = compare_arrays(torch_outputs[0], cls)
    mask_diff = compare_arrays(torch_outputs[1], mask, class_axis=1)
    assert cls.shape == (3, 20) and mask.shape == (3, 21, TEST_INPUT_SIDE, TEST_INPUT_SIDE)
    assert cls_diff.within(REL_TOL) and mask_diff.within(REL_TOL), (cls_diff, mask_diff)


def test_dynamic_batch_gives_the_same_rows(tmp_path_factory, images):
    runner = session(fixed_onnx(tmp_path_factory))
    cls_batch, mask_batch = runner.run(None, {"image": images})
    cls_one, mask_one = runner.run(None, {"image": images[1:2]})
    assert np.allclose(cls_one[0], cls_batch[1], atol=1e-5)
    assert np.allclose(mask_one[0], mask_batch[1], atol=1e-6)


class ChannelSoftmaxHead(torch.nn.Module):
    """A small stand-in with the mask head's ops: channel softmax, sums, unsqueeze, resize."""

    def forward(self, x):
        masks = torch.softmax(x, dim=1)
        pooled = (x * masks).flatten(2).sum(-1) / (1 + masks.flatten(2).sum(-1))
        pooled = pooled + pooled[:, :, None, None].mean((2, 3))
        upsampled = torch.nn.functional.interpolate(masks, scale_factor=2.0, mode="bilinear",
                                                    align_corners=True)
        return masks, upsampled, pooled


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory):
    """(opset-11 export of ChannelSoftmaxHead, sample input, PyTorch outputs)."""
    path = tmp_path_factory.mktemp("wseg_small") / "head.onnx"
    x = torch.randn(2, 21, 6, 5, generator=torch.Generator().manual_seed(3)) * 3
    from common.runtime.export import export_onnx
    export_onnx(ChannelSoftmaxHead(), [x], path, input_names=["x"],
                output_names=["mask", "upsampled", "cls"], pack="Wseg")
    with torch.no_grad():
        expected = [t.numpy() for t in ChannelSoftmaxHead()(x)]
    return path, x.numpy(), expected


def test_small_graph_fix_keeps_onnx_runtime_correct_at_opset_13_only(small_graph, tmp_path):
    path, x, expected = small_graph
    source = onnx.load(str(path))
    assert [n.op_type for n in source.graph.node].count("Transpose") == 2
    for opset in (13, 11):
        fixed, changes = fix_script.fix_for_atc(source, opset=opset)
        assert not any(n.op_type == "Transpose" for n in fixed.graph.node) and changes
        softmaxes = [n for n in fixed.graph.node if n.op_type == "Softmax"]
        assert len(softmaxes) == 1 and softmaxes[0].attribute[0].i == 1
        out_path = tmp_path / f"fixed{opset}.onnx"
        onnx.save(fixed, str(out_path))
        outputs = session(out_path).run(None, {"x": x})
        mask = outputs[0]
        tagged = "segzoo_atc_only" in read_metadata(fixed)
        if opset == 13:
            assert not tagged
            for got, want in zip(outputs, expected):
                assert np.allclose(got, want, atol=1e-5)
        else:
            # The spec's point: Softmax-11 over axis 1 of [B,21,H,W] normalises all 21*H*W values.
            assert tagged
            assert np.allclose(mask.sum(axis=(1, 2, 3)), 1.0, atol=1e-4)
            assert np.abs(mask - expected[0]).max() > 0.1


def test_fix_refuses_an_already_fixed_graph(small_graph, tmp_path):
    once = tmp_path / "once.onnx"
    fix_script.main(fix_script.parse_args([str(small_graph[0]), str(once)]))
    result = run_script("Wseg", "fix_softmax_transpose.py", once, tmp_path / "again.onnx", check=False)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "Transpose-Softmax-Transpose" in lines[0]
    assert not (tmp_path / "again.onnx").exists()


def test_opset_13_upgrade_refuses_an_unknown_op():
    node = onnx.helper.make_node("LpNormalization", ["x"], ["y"], name="odd")
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1, 2])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1, 2])])
    with pytest.raises(UserError, match="LpNormalization"):
        fix_script.upgrade_to_opset13(onnx.helper.make_model(graph))


def test_export_rejects_a_config_with_other_constants(tmp_path):
    config = tmp_path / "voc_other.yaml"
    config.write_text("NET:\n  BACKBONE: resnet38\n  MODEL: ae\n  SG_PSI: 0.5\n", encoding="utf-8")
    args = export_script.parse_args([str(config), str(tmp_path / "unread.pth"), str(tmp_path / "x.onnx")])
    with pytest.raises(UserError) as caught:
        export_script.main(args)
    assert str(caught.value) == f"{config}: NET.SG_PSI is 0.5; this network implements 0.3 only"


def test_export_reads_the_pad_size_of_the_upstream_config(tmp_path):
    config = tmp_path / "voc_resnet38.yaml"
    config.write_text("NET:\n  BACKBONE: \"resnet38\"\n  MODEL: \"ae\"\n  SG_PSI: 0.3\n"
                      "TEST:\n  PAD_SIZE: [1024, 1024]\n", encoding="utf-8")
    args = export_script.parse_args([str(config), "m.pth", "o.onnx"])
    assert export_script.input_size_from(args, export_script.read_config(config)) == 1024
    args = export_script.parse_args(["m.pth", "o.onnx", "--input-size", "60"])
    with pytest.raises(UserError, match="multiple of 8"):
        export_script.input_size_from(args, None)
