"""The linear layers of a LLaMA-family decoder block: ONE list for every stage.

Pruning iterates over them, the simulator builds synthetic workloads from them, the reports order
their heatmap columns by them.  Shapes follow the weight convention ``[out, in]``.
"""

from __future__ import annotations

# LLaMA-family model types (HF ``model_type`` / GGUF ``general.architecture``): the same seven
# linear layers per block (Qwen2 adds q/k/v biases; biases do not change the weight masks).
ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2")

# The seven linear layers of a decoder block, by local module name, in the block's order.
LINEAR_NAMES: tuple[str, ...] = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
# The same layers by projection name (``q_proj`` ... ``down_proj``).
PROJECTIONS: tuple[str, ...] = tuple(name.rsplit(".", 1)[1] for name in LINEAR_NAMES)
# projection -> its local module name (``"down_proj"`` -> ``"mlp.down_proj"``)
LINEAR_OF: dict[str, str] = {name.rsplit(".", 1)[1]: name for name in LINEAR_NAMES}


def linear_shapes(hidden: int, intermediate: int, kv_dim: int) -> dict[str, tuple[int, int]]:
    """projection -> weight shape ``(out, in)``; ``kv_dim`` = key/value heads × head size (= hidden without GQA)."""
    return {
        "q_proj": (hidden, hidden),
        "k_proj": (kv_dim, hidden),
        "v_proj": (kv_dim, hidden),
        "o_proj": (hidden, hidden),
        "gate_proj": (intermediate, hidden),
        "up_proj": (intermediate, hidden),
        "down_proj": (hidden, intermediate),
    }
