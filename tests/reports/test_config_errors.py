"""Bad experiment and sweep files give one-line errors naming the key (no torch, no run)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from besa.experiment.plan import eval_cmd
from besa.experiment.spec import KNOWN_METHODS, load_experiment, parse_experiment, run_name
from besa_common.errors import UserError
from simulator.sweep import expand, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs" / "experiments" / "default.toml"


def _default() -> dict:
    d = tomllib.loads(DEFAULT.read_text())
    # only the methods this checkout registers, so each case isolates the one error it is about
    d["runs"][0]["methods"] = [m for m in d["runs"][0]["methods"] if m in KNOWN_METHODS]
    return d


def test_default_experiment_expands():
    exp = load_experiment(DEFAULT)
    names = [r.name for r in exp.run_specs()]
    assert names == ["dense", "magnitude-s50", "wanda-s50", "sparsegpt-s50", "besa-s50", "wanda-s50-2x4", "besa-admm-s50"]
    admm = {r.name: r for r in exp.run_specs()}["besa-admm-s50"]  # the best configuration: its own flags, its own folder
    assert admm.method == "besa" and admm.tag == "admm" and dict(admm.options) == {"exact_budget": "model", "weight_update": "admm", "admm_reselect": 10}
    assert exp.experiment.model == "smollm2-135m"


def test_hellaswag_reaches_every_eval_step_with_the_same_subset():
    exp = load_experiment(DEFAULT)
    assert exp.eval.hellaswag == 0  # off in the shipped default: it does not fit the time budget (docs/run.md)
    assert all("--tasks" not in eval_cmd(exp, s, Path("/tmp/x")) for s in exp.run_specs())
    d = _default()
    d["eval"]["hellaswag"] = 100
    on = parse_experiment(d, source="x.toml")
    for spec in on.run_specs():
        cmd = eval_cmd(on, spec, Path("/tmp/x") / spec.name)
        i = cmd.index("--tasks")
        assert cmd[i : i + 6] == ["--tasks", "hellaswag", "--limit", "100", "--zs-scorer", "shared"]


def test_run_names():
    assert run_name("besa", 0.5, "unstructured", 16) == "besa-s50"
    assert run_name("wanda", 0.5, "2:4", 16) == "wanda-s50-2x4"
    assert run_name("besa", 0.5, "unstructured", 4) == "besa-s50-w4"
    assert run_name("wanda", 0.625, "unstructured", 16) == "wanda-s0.625"
    assert run_name("besa", 0.5, "unstructured", 16, "admm") == "besa-admm-s50"
    assert run_name("besa", 0.5, "2:4", 4, "admm") == "besa-admm-s50-2x4-w4"


def test_nm_runs_take_the_sparsity_of_n_kept_of_m():
    d = _default()
    d["runs"][1].update(patterns=["1:4", "2:4"], sparsities=[0.75, 0.5])
    specs = {r.name: r for r in parse_experiment(d, source="x.toml").run_specs()}
    assert specs["wanda-s75-1x4"].sparsity == 0.75 and specs["wanda-s50-2x4"].sparsity == 0.5
    d["runs"][1].update(patterns=["1:4"], sparsities=[0.25])  # the old "1 of 4 pruned" reading
    with pytest.raises(UserError, match=r"sparsities\[0\].*1:4 = 0.75"):
        parse_experiment(d, source="x.toml")


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d["calibration"].update(nsampels=3), "[calibration].nsampels: unknown key"),
        (lambda d: d.update(extra={}), "extra: unknown key"),
        (lambda d: d["calibration"].update(nsamples="32"), "[calibration].nsamples: expected an integer"),
        (lambda d: d["runs"][0].update(sparsities=[0.5, "x"]), "[[runs]][0].sparsities[1]: expected a number"),
        (lambda d: d["runs"][0].update(methods=["magnitude", "obs"]), "[[runs]][0].methods[1]: unknown method 'obs'"),
        (lambda d: d["runs"][1].update(patterns=["4:2"]), "[[runs]][1].patterns[0]"),
        (lambda d: d["runs"][0].update(methods=[]), "[[runs]][0].methods: empty list"),
        (lambda d: d.update(runs=[]), "[[runs]]: expected one or more"),
        (lambda d: d["simulate"][0].update(preset="tpu9000"), "[[simulate]][0].preset: unknown preset 'tpu9000'"),
        (lambda d: d["simulate"][0].update(tokens=[]), "[[simulate]][0].tokens: empty list"),
        (lambda d: d["whatif"].update(run="nope-s50"), "[whatif].run: 'nope-s50' is not a run"),
        (lambda d: d["whatif"].update(lines=[1]), "[whatif].lines: unknown key"),
        (lambda d: d["eval"].update(seqlen=True), "[eval].seqlen: expected an integer"),
        (lambda d: d["eval"].update(hellaswag=-1), "[eval].hellaswag: must be >= 0"),
        (lambda d: d["eval"].update(hellaswag=10043), "[eval].hellaswag: must be <= 10042"),
        # [whatif]: the same checks as a sweep file (the hang of `workers = -1` included)
        (lambda d: d["whatif"].update(workers=-1), "[whatif].workers must be an integer >= 0"),
        (lambda d: d["whatif"].update(mode="warp"), "[whatif].mode: unknown mode 'warp'"),
        (lambda d: d["whatif"].update(tokens=[0]), "[whatif].tokens[0]: token counts must be >= 1"),
        (lambda d: d["whatif"].update(preset="tpu9000"), "[whatif].preset: unknown hardware preset 'tpu9000'"),
        (lambda d: d["whatif"]["grid"].update(linez=[1]), "[whatif].grid.linez: unknown hardware field"),
        (lambda d: d["whatif"]["grid"].update(lines=["x"]), "[whatif].grid.lines[0]: expected an integer"),
        (lambda d: d["whatif"]["grid"].update(lines=[16, 0]), "[whatif].grid.lines[1]: hardware"),
        (lambda d: d["experiment"].update(seed=-1), "[experiment].seed: must be >= 0"),
        # a grid's own prune flags need a tag (its runs' folder names), a valid one, and flag-like values
        (lambda d: d["runs"][2].pop("tag"), "[[runs]][2].options: give the grid a tag too"),
        (lambda d: d["runs"][2].update(tag="ADMM-1"), "[[runs]][2].tag: 'ADMM-1' must be 1-32 lowercase letters or digits"),
        (lambda d: d["runs"][2]["options"].update(admm_reselect=[10]), "[[runs]][2].options.admm_reselect: expected a string, number or boolean"),
        (lambda d: d["runs"][2].update(methods=["dense"]), "[[runs]][2].options: the dense run is not pruned"),
        (lambda d: d["runs"].append(dict(d["runs"][2], options={"weight_update": "obs"})), "two grids give run 'besa-admm-s50' different options"),
        # two different runs, one name (one folder): refused
        (
            lambda d: d["runs"][0].update(methods=["magnitude"], sparsities=[0.3333331, 0.3333332]),
            "[[runs]]: sparsities 0.3333331 and 0.3333332 of magnitude would both be run 'magnitude-s0.333333'",
        ),
    ],
)
def test_bad_experiment_names_the_key(mutate, key):
    d = _default()
    mutate(d)
    with pytest.raises(UserError) as exc:
        parse_experiment(d, source="x.toml")
    msg = str(exc.value)
    assert key in msg and "\n" not in msg and msg.startswith("x.toml: ")


def test_known_methods_match_the_registry():
    """KNOWN_METHODS (the light registry pruning.method_names, no torch) must be exactly the registry plus 'dense'."""
    pytest.importorskip("torch")
    import importlib
    import pkgutil

    import pruning.methods as pkg
    from pruning.methods.base import METHODS

    for m in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"pruning.methods.{m.name}")
    if not METHODS:
        pytest.skip("no pruning method registered yet")
    assert set(KNOWN_METHODS) - {"dense"} == set(METHODS)
    from pruning.method_names import METHOD_MODULES

    for name, cls in METHODS.items():  # each name is registered by the module the light registry names
        assert cls.__module__ == METHOD_MODULES[name], name


SWEEP = """
[sweep]
preset = "vitcod"
tokens = [1, 16]
[grid]
lines = [16, 32]
dram_bytes_per_cycle = [82.5, 164.93]
[[workload]]
name = "w"
synthetic = "64x64*2:sparsity=0.5"
"""


def test_sweep_points_are_stable(tmp_path):
    d = tomllib.loads(SWEEP)
    a, b = expand(parse_sweep(d)), expand(parse_sweep(tomllib.loads(SWEEP)))
    assert len(a) == 2 * 2 * 2 and [p.point_id for p in a] == [p.point_id for p in b]
    assert len({p.point_id for p in a}) == len(a)
    d["grid"]["lines"] = [16, 64]  # a changed value changes only the affected ids
    c = expand(parse_sweep(d))
    assert len({p.point_id for p in a} & {p.point_id for p in c}) == 4


def test_point_ids_follow_their_definition():
    """expand() serialises shared parts once for speed: ids must equal simulator.sweep.point_id exactly."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from simulator.sweep import point_id
    from simulator.sweep.identity import fast_ids

    text = st.text(max_size=6)

    @settings(max_examples=200, deadline=None)
    @given(
        machine=text,
        workload=text,
        name=text,
        mode=st.text(max_size=4),
        tokens=st.lists(st.integers(1, 10**9), min_size=1, max_size=3),
        context=st.one_of(st.none(), st.integers(0, 10**6)),
        batch=st.integers(1, 64),
    )
    def check(machine, workload, name, mode, tokens, context, batch):
        got = fast_ids(machine, workload, name, mode, tuple(tokens), context, batch)
        assert got == [point_id(machine, workload, name, mode, t, context, batch) for t in tokens]

    check()


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d["grid"].update(linez=[1]), "[grid].linez: unknown hardware field"),
        (lambda d: d["grid"].update(lines=[]), "[grid].lines: empty list"),
        (lambda d: d["grid"].update(lines=["many"]), "[grid].lines[0]: expected an integer"),
        (lambda d: d["grid"].update(lines=16), "[grid].lines: expected a list"),
        (lambda d: d["sweep"].update(preset="tpu9000"), "[sweep].preset: unknown hardware preset 'tpu9000'"),
        (lambda d: d["sweep"].update(mode="warp"), "[sweep].mode: unknown mode 'warp'"),
        (lambda d: d["sweep"].update(tokens=[1, 0]), "[sweep].tokens[1]: token counts must be >= 1"),
        (lambda d: d["sweep"].update(seed=-3), "[sweep].seed: must be in 0..2^63-1"),
        (lambda d: d["grid"].update(lines=[16, 0]), "[grid].lines[1]: hardware 'vitcod': lines must be >= 1"),
        (lambda d: d["grid"].update(tau=[0.5, 1.5]), "[grid].tau[1]"),
        (lambda d: d["grid"].update(index_format=["bitmap", "zip"]), "[grid].index_format[1]"),
        (lambda d: d["grid"].update(lines=[16, 16]), "[grid].lines: duplicate value 16"),
        (lambda d: d["grid"].update(name=["x"]), "[grid].name: unknown hardware field"),
        (
            lambda d: d["workload"][0].update(synthetic=None, masks="missing.safetensors") or d["workload"][0].pop("synthetic"),
            "[[workload]][0].masks: file not found",
        ),
        (lambda d: d["sweep"].update(tokens=[]), "[sweep].tokens: empty list"),
        (lambda d: d["sweep"].update(tokenz=[1]), "[sweep].tokenz: unknown key"),
        (lambda d: d.pop("workload"), "[[workload]]: missing"),
        (lambda d: d["workload"][0].update(masks="a.safetensors"), "[[workload]][0]: give exactly one of"),
        (lambda d: d["workload"][0].update(synthetic="llama-9b"), "[[workload]][0].synthetic"),
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
    ],
)
def test_bad_sweep_names_the_key(mutate, key):
    d = tomllib.loads(SWEEP)
    mutate(d)
    with pytest.raises(UserError) as exc:
        parse_sweep(d, source="s.toml")
    assert key in str(exc.value) and "\n" not in str(exc.value)


def test_shipped_sweeps_parse():
    spec = load_sweep(ROOT / "configs" / "sweeps" / "whatif-llama7b.toml")
    pts = expand(spec)
    hw = {p.hw for p in pts}
    assert len(hw) >= 200 and spec.workloads[0].synthetic.startswith("llama-7b")
    # its second workload is a run of `besa run` (masks checked at parse time: missing = one line)
    tau = ROOT / "configs" / "sweeps" / "buffers-tau.toml"
    d = tomllib.loads(tau.read_text())
    masks = (tau.parent / d["workload"][1]["masks"]).resolve()
    if masks.is_file():
        load_sweep(tau)
    else:
        with pytest.raises(UserError, match=r"\[\[workload\]\]\[1\]\.masks: file not found"):
            load_sweep(tau)
        d["workload"] = d["workload"][:1]
        parse_sweep(d, source=str(tau), base=tau.parent)


def test_cli_bad_files_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT.read_text().replace("nsamples = 32", "nsamples = 32\nnsampels = 4"))
    r = subprocess.run([sys.executable, "-m", "besa.cli", "run", str(bad), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "[calibration].nsampels: unknown key" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    sw = tmp_path / "s.toml"
    sw.write_text(SWEEP.replace("lines = [16, 32]", "lines = [16, 32]\nflux = [1]"))
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(sw), "--out", str(tmp_path / "so")], capture_output=True, text=True)
    assert r.returncode == 2 and "[grid].flux: unknown hardware field" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    sw.write_text("[sweep\n")
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(sw), "--out", str(tmp_path / "so")], capture_output=True, text=True)
    assert r.returncode == 2 and "not valid TOML" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    sw.write_text(SWEEP.replace('preset = "vitcod"', 'preset = "vitcod"\nmode = "warp"'))
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(sw), "--out", str(tmp_path / "so")], capture_output=True, text=True)
    assert r.returncode == 2 and "[sweep].mode: unknown mode 'warp'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "so").exists()  # nothing ran, nothing written
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(sw), "--out", str(tmp_path / "so"), "--workers", "-1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--workers must be an integer >= 0" in r.stderr
