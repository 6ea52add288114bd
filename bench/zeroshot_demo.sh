#!/usr/bin/env bash
# Dense vs Wanda vs BESA zero-shot accuracy on SmolLM2, through lm-eval, on the FIXTURE task files.
#
# A DEMONSTRATION OF THE PIPELINE, NOT BENCHMARK NUMBERS: the fixtures (pruning/tasks/fixtures/) are
# 10 hand-written examples per task; the real PIQA/BoolQ/HellaSwag/WinoGrande/ARC sets are in no
# registry this project can reach.  Point TASK_DATA at the released files to get real numbers.
#
#   bash bench/zeroshot_demo.sh                 # OUT=runs/zeroshot-demo, 50% unstructured
#   OUT=dir NSAMPLES=16 SEQLEN=256 SPARSITY=0.5 TASK_DATA=pruning/tasks/fixtures bash bench/zeroshot_demo.sh
#
# Small calibration by default (16 windows x 256 tokens) so it finishes in minutes on 2 CPU cores.
# Reruns resume: finished prunes are skipped (besa prune resumes; eval.json files are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
BESA=${BESA:-besa}
command -v "$BESA" >/dev/null || BESA=.venv/bin/besa
OUT=${OUT:-runs/zeroshot-demo}
NSAMPLES=${NSAMPLES:-16}
SEQLEN=${SEQLEN:-256}
SPARSITY=${SPARSITY:-0.5}
TASK_DATA=${TASK_DATA:-pruning/tasks/fixtures}
MODEL=${MODEL:-smollm2-135m}
mkdir -p "$OUT"

for method in wanda besa; do
  if [ ! -f "$OUT/$method/masks.safetensors" ]; then
    echo "== prune: $method ($SPARSITY, $NSAMPLES x $SEQLEN calibration tokens)" >&2
    "$BESA" prune --model "$MODEL" --method "$method" --sparsity "$SPARSITY" \
      --nsamples "$NSAMPLES" --seqlen "$SEQLEN" --no-progress --out "$OUT/$method" 2> "$OUT/$method.prune.log" \
      || { tail -5 "$OUT/$method.prune.log" >&2; exit 1; }
  fi
done

evaluate() {  # name, extra args
  local name=$1; shift
  if [ ! -f "$OUT/$name.eval.json" ]; then
    echo "== zero-shot: $name" >&2
    # lm-eval and datasets log and draw progress bars on stderr: keep them in a file, show it on failure
    "$BESA" eval --model "$MODEL" "$@" --no-ppl --tasks all --task-data "$TASK_DATA" --no-progress \
      --out "$OUT/$name.eval.json" > /dev/null 2> "$OUT/$name.eval.log" || { tail -5 "$OUT/$name.eval.log" >&2; exit 1; }
  fi
}
evaluate dense
evaluate wanda --masks "$OUT/wanda/masks.safetensors"
evaluate besa --masks "$OUT/besa/masks.safetensors"

python - "$OUT" "$TASK_DATA" "$SPARSITY" <<'EOF'
import json, sys
from pathlib import Path
from pruning.zeroshot import FIXTURES, format_comparison

out, data = Path(sys.argv[1]), Path(sys.argv[2])
runs = {n: json.loads((out / f"{n}.eval.json").read_text())["tasks"] for n in ("dense", "wanda", "besa")}
fixture = data.resolve() == FIXTURES.resolve()
print(f"SmolLM2-135M, {100 * float(sys.argv[3]):.0f}% unstructured, zero-shot via lm-eval; data: {data}"
      + ("  [FIXTURES: pipeline demonstration, NOT benchmark numbers]" if fixture else ""))
print(format_comparison(runs, "acc"))
print()
print(format_comparison(runs, "acc_norm"))
EOF
