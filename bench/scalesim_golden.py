"""Ground truth for `simulator/cost/systolic.py`: run the real SCALE-Sim v3 on GEMM cases, write golden CSVs.

Run with SCALE-Sim's OWN virtual environment under $PEERS, a folder outside the repository (never a project
dependency; numpy must stay below 2.3):

    python3.11 -m venv $PEERS/scalesim
    $PEERS/scalesim/bin/pip install "numpy<2.3" scalesim==3.0.0
    nice -n 10 $PEERS/scalesim/bin/python bench/scalesim_golden.py            # everything
    nice -n 10 $PEERS/scalesim/bin/python bench/scalesim_golden.py --only small  # a group subset

What it writes, under tests/simulator/golden/scalesim/ (the tests read only these files):
  configs/<group>.cfg, topologies/<group>.csv, layout.csv   the exact SCALE-Sim inputs, one run per group
  calc.csv     CALC bandwidth mode (InterfaceBandwidth = CALC): one row per case (= one topology layer):
               array, dataflow, M N K, sparsity, "Total Cycles", stall cycles, SRAM reads/writes per operand
               (DETAILED_ACCESS_REPORT), ellpack_block metadata words (SPARSE_REPORT), group wall time
  user.csv     USER bandwidth mode: the same case keys, the bandwidth (words/cycle) and SRAM sizes used,
               "Total Cycles", "Stall Cycles", and the DRAM words SCALE-Sim moved per operand
  walltime.csv wall and CPU time of the runs timed alone (the LLaMA-7B layer; bench/systolic_speed.py), with
               `uptime` at the end of the run (the machine is shared: the wall time depends on the load)
  README.md    is written by hand (the command, the version, what each column means, the quirks)

GEMM topology convention of SCALE-Sim (topology_utils.load_arrays_gemm): `Layer, M, N, K[, n:m],` with
M = tokens (ifmap rows), N = output features (filters), K = input features (the reduction); its N:M keeps the
first n of every m consecutive weights along K (operand_matrix.create_filter_matrix) and compacts them
(`ellpack_block`, OptimizedMapping = False).

Each group runs in a child process (`--group NAME`), so a big layer's demand matrices are freed before the
next. Nothing here imports the project: this file runs in the SCALE-Sim venv.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "simulator" / "golden" / "scalesim"

# SRAM sizes (kB; SCALE-Sim's word is 1 byte) of the CALC runs: they do not change CALC's cycles or SRAM
# counts (no stalls), only its DRAM estimates, which the goldens do not keep.
CALC_SRAM_KB = (64, 64, 64)


@dataclass(frozen=True)
class Case:
    name: str
    M: int  # tokens (ifmap rows)
    N: int  # output features
    K: int  # input features (reduction)
    sparsity: str = "dense"  # "dense" or "n:m"


@dataclass(frozen=True)
class Group:
    """One SCALE-Sim run: one config (array, dataflow, sparsity support, bandwidth mode) and its layers."""

    name: str
    rows: int
    cols: int
    dataflow: str
    sparse: bool
    cases: tuple[Case, ...]
    mode: str = "CALC"
    bandwidth: int = 10  # USER: words/cycle of every DRAM interface
    sram_kb: tuple[int, int, int] = CALC_SRAM_KB
    timed: bool = False  # a lone layer whose wall time is recorded in walltime.csv
    tags: tuple[str, ...] = ()


# SmolLM2-135M (a LLaMA-architecture model the project ships): hidden 576, 9 heads / 3 KV heads of 64,
# intermediate 1536.
SMOL = {"q_proj": (576, 576), "k_proj": (192, 576), "o_proj": (576, 576), "up_proj": (1536, 576), "down_proj": (576, 1536)}


def _small_cases(sp: str) -> tuple[Case, ...]:
    """Shapes that are not multiples of the array, M = 1 (decode), N = 1, N and K larger than the array."""
    shapes = [(5, 6, 7), (1, 9, 13), (16, 1, 40), (8, 200, 48), (37, 53, 70), (1, 70, 37), (64, 64, 64), (3, 17, 5)]
    return tuple(Case(f"m{m}_n{n}_k{k}_{sp.replace(':', 'of')}", m, n, k, sp) for m, n, k in shapes)


def _llama_cases(sp: str, tokens: tuple[int, ...]) -> tuple[Case, ...]:
    out = []
    for lin, (n, k) in SMOL.items():
        for t in tokens:
            out.append(Case(f"smol_{lin}_t{t}_{sp.replace(':', 'of')}", t, n, k, sp))
    return tuple(out)


def groups() -> list[Group]:
    gs: list[Group] = []
    sparsities = ("dense", "2:4", "1:4")
    # Small shapes on small and non-square arrays: every dataflow x sparsity.
    for rows, cols in ((4, 4), (8, 8), (16, 8), (32, 64), (64, 16), (32, 32)):
        for df in ("ws", "os", "is"):
            for sp in sparsities:
                gs.append(Group(f"small_{rows}x{cols}_{df}_{sp.replace(':', 'of')}", rows, cols, df, sp != "dense", _small_cases(sp), tags=("small",)))
    # LLaMA-shaped layers (SmolLM2-135M) at small token counts.
    for rows, cols in ((32, 32), (64, 64)):
        for df in ("ws", "os", "is"):
            for sp in sparsities:
                tokens = (1, 8) if (rows, cols) == (64, 64) else (1, 8, 32)
                gs.append(Group(f"llama_{rows}x{cols}_{df}_{sp.replace(':', 'of')}", rows, cols, df, sp != "dense", _llama_cases(sp, tokens), tags=("llama",)))
    # USER bandwidth mode: stalls. SRAM big enough to hold each operand (SCALE-Sim's regular regime) and one
    # size where it does not (its refetch regime), bandwidths around the compute rate.
    user_shape = (Case("u_m32_n64_k64", 32, 64, 64), Case("u_m9_n40_k100", 9, 40, 100), Case("u_m1_n128_k96", 1, 128, 96))
    for df in ("ws", "os", "is"):
        for bw in (1, 4, 16, 64):
            gs.append(Group(f"user_8x8_{df}_bw{bw}_fit", 8, 8, df, False, user_shape, "USER", bw, (64, 64, 64), tags=("user",)))
        for bw in (4, 16):
            gs.append(Group(f"user_8x8_{df}_bw{bw}_small", 8, 8, df, False, user_shape, "USER", bw, (2, 2, 2), tags=("user",)))
        gs.append(
            Group(
                f"user_8x8_{df}_bw4_fit_2of4",
                8,
                8,
                df,
                True,
                tuple(Case(c.name + "_2of4", c.M, c.N, c.K, "2:4") for c in user_shape),
                "USER",
                4,
                (64, 64, 64),
                tags=("user",),
            )
        )
    # One LLaMA-7B layer (4096 x 4096, q_proj-shaped) on a 64x64 weight-stationary array, timed alone.
    for t in (1, 128):
        gs.append(Group(f"llama7b_64x64_ws_t{t}", 64, 64, "ws", False, (Case(f"llama7b_q_proj_t{t}", t, 4096, 4096),), timed=True, tags=("llama7b",)))
    return gs


def config_text(g: Group) -> str:
    return f"""[general]
run_name = {g.name}

[architecture_presets]
ArrayHeight : {g.rows}
ArrayWidth : {g.cols}
IfmapSramSzkB : {g.sram_kb[0]}
FilterSramSzkB : {g.sram_kb[1]}
OfmapSramSzkB : {g.sram_kb[2]}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : {g.bandwidth}
Dataflow : {g.dataflow}
ReadRequestBuffer : 512
WriteRequestBuffer : 512

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : {g.bandwidth}
IfmapSRAMBankNum : 1
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : {g.bandwidth}
FilterSRAMBankNum : 1
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : {g.sparse}
SparseRep : ellpack_block
OptimizedMapping : False
BlockSize : 4
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : {g.mode}
UseRamulatorTrace : False
"""


def topology_text(g: Group) -> str:
    lines = ["Layer, M, N, K,"]
    for c in g.cases:
        lines.append(f"{c.name}, {c.M}, {c.N}, {c.K}," + ("" if c.sparsity == "dense" else f" {c.sparsity},"))
    return "\n".join(lines) + "\n"


def _read_report(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        rows = list(csv.reader(f))
    head = [h.strip() for h in rows[0]]
    return [dict(zip(head, [v.strip() for v in r])) for r in rows[1:] if r]


def run_group(g: Group) -> None:
    """In the child: run SCALE-Sim once on the group's config + topology, print one CSV row per layer."""
    from scalesim.scale_sim import scalesim  # the SCALE-Sim venv only

    cfg = OUT / "configs" / f"{g.name}.cfg"
    topo = OUT / "topologies" / f"{g.name}.csv"
    layout = OUT / "layout.csv"
    with tempfile.TemporaryDirectory(prefix="scalesim_") as tmp:
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo), layout=str(layout), input_type_gemm=True)
        t0, c0 = time.perf_counter(), time.process_time()
        sim.run_scale(top_path=tmp)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rep = Path(tmp) / g.name
        comp = _read_report(rep / "COMPUTE_REPORT.csv")
        det = _read_report(rep / "DETAILED_ACCESS_REPORT.csv")
        sparse = _read_report(rep / "SPARSE_REPORT.csv") if g.sparse else [{} for _ in g.cases]
    w = csv.writer(sys.stdout)
    for c, cr, dr, sr in zip(g.cases, comp, det, sparse):
        w.writerow(
            [
                c.name,
                cr["Total Cycles"],
                cr["Stall Cycles"],
                dr["SRAM IFMAP Reads"],
                dr["SRAM Filter Reads"],
                dr["SRAM OFMAP Writes"],
                sr.get("Filter Metadata Storage", ""),
                f"{wall:.3f}",
                dr["DRAM IFMAP Reads"],
                dr["DRAM Filter Reads"],
                dr["DRAM OFMAP Writes"],
                f"{cpu:.3f}",
            ]
        )


CALC_HEADER = [
    "group", "case", "array_rows", "array_cols", "dataflow", "M", "N", "K", "sparsity",
    "total_cycles", "stall_cycles", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes", "filter_metadata_words",
    "group_wall_s", "group_cpu_s",
]  # fmt: skip
USER_HEADER = [
    "group", "case", "array_rows", "array_cols", "dataflow", "M", "N", "K", "sparsity",
    "bandwidth_words_per_cycle", "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb",
    "total_cycles", "stall_cycles", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
    "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=None, help="run only groups with this tag (small, llama, user, llama7b); repeatable")
    ap.add_argument("--group", help="(internal) run one group in this process and print its rows")
    args = ap.parse_args()
    gs = groups()
    if args.group:
        run_group(next(g for g in gs if g.name == args.group))
        return
    import scalesim  # noqa: F401  (fail early outside the SCALE-Sim venv)
    from importlib.metadata import version

    if args.only:
        gs = [g for g in gs if set(g.tags) & set(args.only)]
    for sub in ("configs", "topologies"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    (OUT / "layout.csv").write_text("Layer,\n")  # custom layouts are off; SCALE-Sim still opens the file
    calc_path, user_path, wall_path = OUT / "calc.csv", OUT / "user.csv", OUT / "walltime.csv"
    # Rows of other groups are kept (re-read before every write: --only runs on disjoint tags may overlap).
    new: dict[Path, list[dict[str, str]]] = {calc_path: [], user_path: [], wall_path: []}
    print(f"scalesim {version('scalesim')}, numpy {version('numpy')}, python {sys.version.split()[0]}; {len(gs)} groups", flush=True)
    for g in gs:
        (OUT / "configs" / f"{g.name}.cfg").write_text(config_text(g))
        (OUT / "topologies" / f"{g.name}.csv").write_text(topology_text(g))
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, "--group", g.name], capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"SCALE-Sim failed on group {g.name}:\n{res.stderr[-3000:]}")
        rows = list(csv.reader(res.stdout.strip().splitlines()))
        print(f"{g.name}: {len(rows)} layers, {time.perf_counter() - t0:.1f} s", flush=True)
        for c, r in zip(g.cases, rows):
            assert r[0] == c.name, (r, c)
            key = {
                "group": g.name,
                "case": c.name,
                "array_rows": g.rows,
                "array_cols": g.cols,
                "dataflow": g.dataflow,
                "M": c.M,
                "N": c.N,
                "K": c.K,
                "sparsity": c.sparsity,
            }
            counts = {"total_cycles": r[1], "stall_cycles": r[2], "sram_ifmap_reads": r[3], "sram_filter_reads": r[4], "sram_ofmap_writes": r[5]}
            if g.mode == "CALC":
                new[calc_path].append({**key, **counts, "filter_metadata_words": r[6], "group_wall_s": r[7], "group_cpu_s": r[11]})
                if g.timed:
                    new[wall_path].append(
                        {
                            "group": g.name,
                            "case": c.name,
                            "dataflow": g.dataflow,
                            "array_rows": g.rows,
                            "array_cols": g.cols,
                            "M": c.M,
                            "N": c.N,
                            "K": c.K,
                            "scalesim_wall_s": r[7],
                            "scalesim_cpu_s": r[11],
                            "uptime": _uptime(),
                            "total_cycles": r[1],
                        }
                    )
            else:
                kb = {"ifmap_sram_kb": g.sram_kb[0], "filter_sram_kb": g.sram_kb[1], "ofmap_sram_kb": g.sram_kb[2]}
                dram = {"dram_ifmap_reads": r[8], "dram_filter_reads": r[9], "dram_ofmap_writes": r[10]}
                new[user_path].append({**key, "bandwidth_words_per_cycle": g.bandwidth, **kb, **counts, **dram})
        _merge_rows(calc_path, CALC_HEADER, new[calc_path])
        _merge_rows(user_path, USER_HEADER, new[user_path])
        wall_header = ["group", "case", "dataflow", "array_rows", "array_cols", "M", "N", "K", "scalesim_wall_s", "scalesim_cpu_s", "uptime", "total_cycles"]
        _merge_rows(wall_path, wall_header, new[wall_path])


def _uptime() -> str:
    """The load beside a timing (the machine is shared): `uptime`'s output."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _merge_rows(path: Path, header: list[str], rows: list[dict]) -> None:
    """Replace the rows of the groups in ``rows`` (the file on disk keeps every other group's)."""
    if not rows:
        return
    mine = {r["group"] for r in rows}
    rows = [r for r in _read_rows(path) if r.get("group") not in mine] + rows
    tmp = path.with_name(f".{path.name}.pid{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for r in sorted(rows, key=lambda r: (r["group"], r["case"])):
            w.writerow({k: r.get(k, "") for k in header})
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
