"""Learned n:m on single SmolLM2 blocks: final-mask reconstruction loss of BESA 2:4 relative to Wanda 2:4.

    python bench/besa_nm_block.py NSAMPLES BLOCKS [CONFIG ...]
    python bench/besa_nm_block.py 32 1 "d_coef=5" "d_coef=1" "nm_init_scale=0.1,d_coef=5"

NSAMPLES calibration windows x 256 tokens of the offline wiki train split (seed 0); BLOCKS comma-separated
block indices (earlier blocks are run dense to produce their inputs); each CONFIG is comma-separated
``BesaConfig`` fields.  For every block prints Wanda 2:4's block loss (the channel-normalised L2 of
``pruning.methods.besa.core.reconstruction_loss`` against the dense block, mean over the windows), then per
config: the learned mask's loss and its ratio to Wanda's, Prodigy's final d, the share of groups whose
pattern changed, the training loss (first step -> mean of the last quarter) and the time.
"""

import sys
import time

import torch

import pruning.methods  # noqa: F401  (fills the registry: METHODS["wanda"])
import pruning.methods.besa.core as core
from pruning.data import calibration
from pruning.methods.base import LINEAR_NAMES, METHODS, BlockInputs, BlockJob
from pruning.methods.besa import Besa, BesaConfig
from pruning.models import decoder_layers, load_model

torch.set_num_threads(1)

dev = torch.device("cpu")
model, tok = load_model("smollm2-135m")  # noqa: E231
N = int(sys.argv[1])
blocks = [int(x) for x in sys.argv[2].split(",")]
configs = sys.argv[3:]
calib = calibration(tok, "wiki", N, 256, 0)
layers = decoder_layers(model)
cap = {}


class Stop(Exception):
    pass


def catch(_m, args, kwargs):
    cap["h"] = args[0] if args else kwargs["hidden_states"]
    cap["kw"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
    raise Stop


h = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
hs = []
with torch.no_grad():
    for i in range(N):
        try:
            model(calib[i : i + 1])
        except Stop:
            hs.append(cap["h"])
h.remove()
hidden = torch.cat(hs)
kw = cap["kw"]


def loss_of(block, inputs, targets, keep):
    mods = dict(block.named_modules())
    w = {f"{n}.weight": mods[n].weight * keep[n] for n in keep}
    with torch.no_grad():
        return (
            sum(float(core.reconstruction_loss(torch.func.functional_call(block, w, (inputs.hidden[i : i + 1],), kw)[0], targets[i : i + 1])) for i in range(N))
            / N
        )


for bi in range(max(blocks) + 1):
    block = layers[bi]
    inputs = BlockInputs(hidden, kw)
    if bi in blocks:
        with torch.no_grad():
            targets = torch.cat([inputs.run(block, i, dev) for i in range(N)])
        job = BlockJob(bi, f"model.layers.{bi}.", {n: 0.5 for n in LINEAR_NAMES}, (2, 4), dev, None, 0)
        wk = METHODS["wanda"]().prune_block(block, inputs, None, job).keep
        lw = loss_of(block, inputs, targets, {n: k.bool() for n, k in wk.items()})
        print(f"block {bi} wanda24 loss {lw:.5f}", flush=True)
        for c in configs:
            kv = dict(x.split("=") for x in c.split(",")) if c else {}
            cfg = BesaConfig(verbose=False, **{k: (int(v) if k == "epochs" else float(v)) for k, v in kv.items()})
            t = time.time()
            r = Besa(cfg).prune_block(block, inputs, targets, job)
            l = loss_of(block, inputs, targets, r.keep)
            ch = sum(r.record["layers"][n]["changed_groups"] for n in LINEAR_NAMES) / 7
            print(
                f"block {bi} {c}: loss {l:.5f} ({l / lw:.3f}x wanda) d {r.record['prodigy_d']:.3g} changed {ch:.4f} train {r.record['loss_first']:.4f}->{r.record['loss_mean_last_quarter']:.4f} {time.time() - t:.0f}s",
                flush=True,
            )
    with torch.no_grad():
        hidden = torch.cat([BlockInputs(hidden, kw).run(block, i, dev) for i in range(N)])
