"""The one block driver: capture block-0 inputs, then prune decoder blocks in order, sequentially.

Every method runs through :func:`prune_model`; the lifecycle is the one in
:mod:`pruning.methods.base`:

1. **Capture**: run the embedding on each calibration window and stop at decoder block 0, keeping
   its hidden states ``(n, T, C)`` and EVERY keyword argument it receives (attention mask,
   position ids, rotary ``position_embeddings`` in transformers 5.x, cache flags).
2. **Per block** ``i`` (only this block on the compute device; with CUDA the model stays on CPU):
   targets (dense block on the pruned-propagated inputs, or on the dense trajectory with
   ``target="dense"``) when the method ``needs_targets`` (a method that ``makes_targets``, BESA,
   gets ``None`` in the pruned mode and records them in its own dense pass); ``method.prune_block``; copy its updated
   weights (if any), multiply the keep masks in, quantize when ``wbits`` is set; checkpoint; run
   the pruned block to get block ``i + 1``'s inputs (pruned propagation).
3. **Write** ``DIR/weights.safetensors`` when any weights were updated (the changed linears' kept
   values before quantization, tied to the masks by their SHA-256; ``besa_common.weights``), then
   ``DIR/masks.safetensors``, ``DIR/manifest.json``, ``DIR/allocation.json`` (and
   ``DIR/quant.safetensors``), then remove ``DIR/checkpoint/``.

Activation buffers (``(n, T, C)`` fp32, on the device, or on CPU with ``offload_acts``): the
inputs (updated in place, window by window), the targets (the method's own when it ``makes_targets``),
and the dense trajectory: at most three.

Modules, one per stage: ``config.py`` (DriverConfig, targets, up-front checks; the device and dtype
are :mod:`pruning.device`'s), ``capture.py`` (input capture and propagation), ``checkpoint.py``
(resume), ``loop.py`` (the block loop, :func:`prune_model`), ``rundir.py`` (the run directory).
This package exposes the public names.

Resume: each finished block's masks (plus the weights the method updated, before quantization,
and with ``wbits`` the final quantized weights) go to ``DIR/checkpoint/block-NNN.safetensors``.  A
rerun with the same settings (checked by a fingerprint) re-applies finished blocks and recomputes
their outputs with the same
operations, so it continues at the first unfinished block with bit-identical masks.  Activations
are recomputed rather than stored: a forward pass is cheap next to pruning, and
``n × T × C`` fp32 per block would be gigabytes at the paper's settings.
"""

from pruning.driver.capture import capture_inputs, forward_block
from pruning.driver.checkpoint import CHECKPOINT_VERSION
from pruning.driver.config import PATTERN_CONVENTION, TARGET_MODES, DriverConfig, check_group_size, layer_targets
from pruning.driver.loop import prune_model
from pruning.weight_update import WeightUpdateConfig

__all__ = [
    "CHECKPOINT_VERSION",
    "PATTERN_CONVENTION",
    "TARGET_MODES",
    "DriverConfig",
    "WeightUpdateConfig",
    "capture_inputs",
    "check_group_size",
    "forward_block",
    "layer_targets",
    "prune_model",
]
