#!/usr/bin/env bash
# Install the toolkit the way a user would -- a wheel, fresh venvs, run from a folder outside the
# checkout -- and try it.  Run by .ci/run after the tests (it needs .venv for the wheel build).
#
#   core venv (NO torch, no Dask): pip install besa-toolkit
#       besa --version; besa simulate --hw vitcod --synthetic; besa report on a fixture run;
#       besa sweep --workers 0 (serial); besa sweep (Dask) / prune / run say which extra is missing,
#       in one line; then + the sweep extra: besa sweep on a Dask LocalCluster
#   full venv: torch==2.13.0 first (the CPU build), then 'besa-toolkit[all]'
#       besa --version; python -m besa; simulate; report; besa run --dry-run on the shipped default
#       experiment; besa prune --help
#
# Versions come from requirements.txt (used as constraints), so these venvs match the tested one.
# Usage: bash scripts/smoke_install.sh [WORKDIR]   (default: a new temp dir, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip on this kind of machine warns once per package about an absent local index; hide only that.
qpip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/besa-smoke.XXXXXX")}
[ -n "${1:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
case "$WORK" in "$REPO"/*) echo "smoke: $WORK must be outside the checkout" >&2; exit 2 ;; esac

step() { echo "[smoke] $*"; }
t0=$SECONDS
step "building the wheel"
qpip .venv/bin/pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" .
WHEEL=$(ls "$WORK"/dist/besa_toolkit-*.whl)
cp -r tests/reports/fixtures/default "$WORK/fixture-runs"  # hand-made run directories (tests/reports/fixtures)
cat > "$WORK/tiny-sweep.toml" <<'EOF'
[sweep]
preset = "vitcod"
mode = "cycle"
tokens = [1, 64]

[grid]
lines = [16, 64]

[[workload]]
name = "tiny"
synthetic = "256x512*3:skewed=0.5"
EOF
cd "$WORK"  # from here on nothing can be imported from the checkout

# Expect exit status 2 and exactly one stderr line equal to $2.
expect_one_line() {
  local out rc=0
  out=$("$1" "${@:3}" 2>&1 >/dev/null) || rc=$?
  if [ "$rc" != 2 ] || [ "$out" != "$2" ]; then
    echo "smoke: '$(basename "$1") ${*:3}' gave rc=$rc and: $out (expected rc=2 and: $2)" >&2
    exit 1
  fi
}

step "core venv, no torch, no Dask: pip install '$(basename "$WHEEL")'"
"$PY" -m venv core
qpip core/bin/pip install -q -c "$REPO/requirements.txt" "$WHEEL"
B=core/bin
for mod in torch transformers distributed; do
  if $B/python -c "import $mod" 2>/dev/null; then echo "smoke: $mod is installed in the core venv" >&2; exit 1; fi
done
$B/besa --version
$B/besa simulate --hw vitcod --synthetic smollm2-135m:skewed=0.5 --tokens 1,512 --out sim-core >/dev/null
test -s sim-core/summary.json
$B/besa report fixture-runs --out report-core >/dev/null
test -s report-core/report.html
$B/besa sweep tiny-sweep.toml --out sweep-serial --workers 0 --no-progress >/dev/null  # serial: no Dask needed
test -s sweep-serial/results.parquet && test -s sweep-serial/report.html
expect_one_line $B/besa "besa sweep needs: pip install 'besa-toolkit[sweep]'" sweep tiny-sweep.toml --out sweep-dask
expect_one_line $B/besa "besa prune needs: pip install 'besa-toolkit[prune]'" prune --help
expect_one_line $B/besa "besa run needs: pip install 'besa-toolkit[prune]'" run --out run-core
$B/besa run --out run-core --dry-run >/dev/null  # validating the shipped default experiment needs no torch

step "core venv + the sweep extra (still no torch): besa sweep on a Dask LocalCluster"
qpip core/bin/pip install -q -c "$REPO/requirements.txt" "$WHEEL[sweep]"
if $B/python -c "import torch" 2>/dev/null; then echo "smoke: the sweep extra pulled in torch" >&2; exit 1; fi
$B/besa sweep tiny-sweep.toml --out sweep-dask --workers 2 --no-progress >/dev/null
test -s sweep-dask/results.parquet && test -s sweep-dask/report.html

step "full venv: torch==2.13.0, then '$(basename "$WHEEL")[all]'"
"$PY" -m venv full
qpip full/bin/pip install -q torch==2.13.0
qpip full/bin/pip install -q -c "$REPO/requirements.txt" "$WHEEL[all]"
B=full/bin
$B/besa --version
$B/python -m besa --version
$B/besa simulate --hw vitcod --synthetic smollm2-135m:skewed=0.5 --tokens 1 --out sim-full >/dev/null
$B/besa report fixture-runs --out report-full >/dev/null
test -s report-full/report.html
$B/besa run --out run-full --dry-run >/dev/null
$B/besa prune --help >/dev/null
$B/python - <<'EOF'
# the shipped configs come from the installed package, not from a checkout
import besa_common.resources as r, simulator.hardware as h
root = r.configs_root()
assert "site-packages" in str(root), root
assert {"vitcod", "besa-paper-array", "hbm-4k"} <= set(r.config_names("hw")), r.config_names("hw")
assert h.load_hardware("vitcod").name == "vitcod"
assert r.config_file("experiments", "default").is_file()
EOF
step "passed in $((SECONDS - t0)) s"
