"""The one LLaMA projection list (besa_common.llama) and the stages that use it."""

from besa_common import llama


def test_projection_list_and_shapes_by_hand():
    assert llama.PROJECTIONS == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert llama.LINEAR_OF["down_proj"] == "mlp.down_proj" and llama.LINEAR_OF["k_proj"] == "self_attn.k_proj"
    # SmolLM2-135M: hidden 576, MLP 1536, 3 KV heads of 64 (GQA)
    s = llama.linear_shapes(576, 1536, 192)
    assert s == {
        "q_proj": (576, 576),
        "k_proj": (192, 576),
        "v_proj": (192, 576),
        "o_proj": (576, 576),
        "gate_proj": (1536, 576),
        "up_proj": (1536, 576),
        "down_proj": (576, 1536),
    }
    assert sum(o * i for o, i in s.values()) == 3_538_944  # 2·576² + 2·192·576 + 3·1536·576 per block


def test_stages_share_it():
    from reports.table import PROJECTIONS as report_order
    from simulator.workload import PROJECTIONS, synthetic

    assert tuple(report_order) == PROJECTIONS == llama.PROJECTIONS
    names = [lw.name for lw in synthetic("smollm2-135m[1]", 0)]
    assert names == [f"model.layers.0.{n}" for n in llama.LINEAR_NAMES]
