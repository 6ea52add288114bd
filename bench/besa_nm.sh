#!/usr/bin/env bash
# Learned 2:4 (BESA) vs Wanda 2:4 vs SparseGPT 2:4 on SmolLM2-135M, the same calibration and held-out tokens.
#   bash bench/besa_nm.sh [OUT_DIR]        (default runs/besa-nm; ~1 h on a 2-core CPU)
# Calibration: 32 windows x 256 tokens of the offline wiki train split (seed 0).  Held-out: wiki test,
# seqlen 512, first 24 windows (12,288 tokens).  Prints one line per run: name, realised sparsity, ppl.
set -euo pipefail
OUT=${1:-runs/besa-nm}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
CAL="--nsamples 32 --seqlen 256 --seed 0 --calib-dataset wiki --no-progress"
EV="--dataset wiki --seqlen 512 --max-windows 24 --json --no-progress"
run() {  # name, prune flags...
  local name=$1; shift
  [ -f "$OUT/$name/eval.json" ] && return 0
  $PY -m besa prune "$@" $CAL --out "$OUT/$name"
  $PY -m besa eval --masks "$OUT/$name" $EV --out "$OUT/$name/eval.json" > /dev/null
}
run wanda-2of4            --method wanda     --pattern 2:4
run sparsegpt-2of4        --method sparsegpt --pattern 2:4
run besa-2of4-defaults    --method besa      --pattern 2:4
run besa-2of4             --method besa      --pattern 2:4 ${BESA_NM_FLAGS:---d-coef 1 --epochs 3 --lr 0.2}
run wanda-2of4-admm       --method wanda     --pattern 2:4 --weight-update admm
run besa-2of4-admm        --method besa      --pattern 2:4 ${BESA_NM_FLAGS:---d-coef 1 --epochs 3 --lr 0.2} --weight-update admm
for d in "$OUT"/*/eval.json; do
  $PY -c "import json,sys; e=json.load(open(sys.argv[1])); print(f\"{sys.argv[1].split('/')[-2]:24s} sparsity {e['sparsity']:.4f}  ppl {e['ppl']:.2f}  ({e['windows']} x {e['seqlen']})\")" "$d"
done
