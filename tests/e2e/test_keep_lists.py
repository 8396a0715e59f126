"""Every keep list a pack ships names nodes of the graph its export writes at the guide's size
(the size the list was searched at; ATC refuses a name that is no node of the model)."""
from __future__ import annotations

import subprocess
import sys

import onnx
import pytest

from common.fp16.keep_dtype import resolve_keep_dtype
from common.pipeline.pack_config import StepValues, render
from common.pipeline.packs import PACK_NAMES, pack_config, pack_dir

SHIPPING = [name for name in PACK_NAMES if pack_config(name).fp16_keep_dtype]


def test_some_pack_ships_a_keep_list():
    assert SHIPPING


@pytest.mark.slow
@pytest.mark.parametrize("pack", SHIPPING)
def test_shipped_keep_list_names_nodes_of_the_guide_size_graph(pack, tmp_path):
    config = pack_config(pack)
    weights = tmp_path / "demo_weights" / config.weights_file
    subprocess.run([sys.executable, "-m", "common.demo_weights", pack, str(weights)], check=True,
                   cwd=pack_dir(pack), capture_output=True)
    fields = StepValues(py=sys.executable, work=str(tmp_path), data="", weights=str(weights),
                        input_hw=config.guide.input_hw, count=1).fields(config)
    for step in (*config.steps_of("export"), *config.steps_of("fix")):
        subprocess.run([sys.executable, *render(step.argv, fields)], check=True, cwd=pack_dir(pack),
                       capture_output=True)
    graph = onnx.load(render((config.atc_model(),), fields)[0], load_external_data=False).graph
    kept = resolve_keep_dtype(pack_dir(pack) / config.fp16_keep_dtype, graph, pack)
    listed = [line for line in (pack_dir(pack) / config.fp16_keep_dtype).read_text().splitlines() if line.strip()]
    assert len(kept) == len(listed)  # every line one node, none twice
