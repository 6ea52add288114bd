"""Property tests for the readers of foreign input (issue 21), as tests/test_fuzz_readers.py does for
the project's own files: random safetensors headers, random GGUF metadata, random config.json
values, random ``--context`` / ``--batch`` / ``--tokens``.  Property: exit 0 (the value was valid,
and then the result is sane) or exit 2 with ONE line on stderr, no traceback, nothing written; never
exit 0 on nonsense.  In-process (``besa.cli.main``) for speed; example counts are kept modest.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from besa.cli import main
from besa_common.errors import UserError
from besa_common.foreign import DTYPE_BYTES
from besa_common.modelconfig import FIELDS, MAX_MODEL_WEIGHTS

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
LINEAR = "model.layers.0.mlp.up_proj.weight"


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run(argv: list, root: Path, capsys) -> int:
    before = files(root)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    assert rc in (0, 2), f"{argv}: exit {rc}: {err}"
    event(f"exit {rc}")
    if rc == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert files(root) == before, "a failing command wrote something"
    return rc


# ----------------------------------------------------------------------------- safetensors headers
weird_ints = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 2, 4, 8, 16, -1, 2**31, 2**63, 10**18]))
json_scalar = st.one_of(st.none(), st.booleans(), weird_ints, st.floats(allow_nan=False), st.text(max_size=4))
entries = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(list(DTYPE_BYTES)), st.text(max_size=5), json_scalar),
        "shape": st.one_of(st.lists(weird_ints, max_size=3), st.lists(json_scalar, max_size=3), json_scalar),
        "data_offsets": st.one_of(st.lists(weird_ints, min_size=2, max_size=2), st.lists(json_scalar, max_size=3), json_scalar),
    }
)


def _valid(entry, data_len: int) -> bool:
    """An independent statement of a valid entry (what the validated reader must enforce)."""
    d, shape, offs = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    isint = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if d not in DTYPE_BYTES or not isinstance(shape, list) or not all(isint(x) and x >= 0 for x in shape):
        return False
    if not isinstance(offs, list) or len(offs) != 2 or not all(isint(o) for o in offs):
        return False
    return 0 <= offs[0] <= offs[1] <= data_len and offs[1] - offs[0] == math.prod(shape) * DTYPE_BYTES[d]


@st.composite
def valid_entries(draw):
    """A valid entry (and its data length), sometimes with one field then replaced by a random value."""
    dtype = draw(st.sampled_from(["F32", "F16", "BF16", "U8", "I8"]))
    shape = [draw(st.integers(1, 4)), draw(st.integers(1, 12))]
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    entry = {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}
    field = draw(st.sampled_from([None, "dtype", "shape", "data_offsets"]))
    if field is not None:
        entry[field] = draw(entries)[field]
    return entry, nbytes + draw(st.sampled_from([0, 0, 8]))


@SETTINGS
@given(
    case=st.one_of(valid_entries(), st.tuples(entries, st.sampled_from([0, 16, 48, 96]))),
    name=st.sampled_from([LINEAR, LINEAR, "model.layers.0.mlp.up_proj", "lm_head.weight"]),
)
def test_random_safetensors_headers(case, name, capsys):
    entry, data_len = case
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        text = json.dumps({name: entry}).encode()
        (root / "ck.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + bytes(range(data_len)))
        for argv in (
            ["masks", "extract", root / "ck.safetensors", "--out", root / "m.safetensors"],
            ["simulate", "--masks", root / "ck.safetensors", "--out", root / "o"],
        ):
            rc = run(argv, root, capsys)
            if rc == 0:  # never on nonsense
                assert _valid(entry, data_len), entry
            for p in (root / "m.safetensors", root / "o"):
                if p.is_dir():
                    __import__("shutil").rmtree(p)
                elif p.exists():
                    p.unlink()


# ----------------------------------------------------------------------------- GGUF metadata
GGUF_KEYS = ["attention.head_count", "attention.head_count_kv", "block_count", "embedding_length", "feed_forward_length"]
gguf_values = st.one_of(
    st.tuples(st.just("uint32"), st.integers(1, 16)),
    st.tuples(st.just("uint32"), st.sampled_from([0, 2**31, 2**32 - 1])),
    st.tuples(st.just("int32"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("float32"), st.floats(-1e6, 1e6, width=32)),
    st.tuples(st.just("string"), st.text(max_size=4)),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("absent"), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(meta=st.fixed_dictionaries({k: gguf_values for k in GGUF_KEYS}))
def test_random_gguf_metadata(meta, capsys):
    gguf = pytest.importorskip("gguf")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        w = gguf.GGUFWriter(str(root / "m.gguf"), "llama")
        for key, (kind, value) in meta.items():
            if kind != "absent":
                getattr(w, f"add_{kind}")(f"llama.{key}", value)
        w.add_tensor("blk.0.attn_q.weight", np.ones((8, 16), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        heads = meta["attention.head_count"]
        rc = run(["masks", "extract", root / "m.gguf", "--out", root / "m.safetensors"], root, capsys)
        if rc == 0:  # a valid head count that divides the 8 q rows into (2 x heads) groups
            kv = meta["attention.head_count_kv"]
            assert heads[0] in ("uint32", "int32") and heads[1] >= 1 and 8 % (2 * heads[1]) == 0
            assert kv[0] == "absent" or (kv[0] in ("uint32", "int32") and kv[1] >= 1 and heads[1] % kv[1] == 0)
        rc = run(["simulate", "--synthetic", f"{root / 'm.gguf'}[1]:sparsity=0.5", "--mode", "corrected", "--out", root / "o"], root, capsys)
        if rc == 0:
            assert all(meta[k][0] in ("uint32", "int32") and meta[k][1] >= 1 for k in GGUF_KEYS if k != "attention.head_count_kv")


# ----------------------------------------------------------------------------- config.json values
BASE = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), weird_ints, st.floats(), st.text(max_size=6), st.sampled_from(["4", "64", "1e9", "abc"])),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=2)),
    max_leaves=4,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from([*FIELDS, "tie_word_embeddings", "model_type"]), value=json_values)
def test_random_config_values_reader(field, value):
    """The typed reader itself: a shape whose every field is an int in its range, or one UserError."""
    from simulator.modelcfg import from_hf_config

    cfg = dict(BASE, **{field: value})
    try:
        s = from_hf_config(cfg, "m", "cfg.json")
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    for key, (_, lo, hi, _) in FIELDS.items():
        v = {"hidden_size": s.hidden, "intermediate_size": s.intermediate, "num_hidden_layers": s.layers, "num_attention_heads": s.heads}.get(key)
        v = v if v is not None else {"num_key_value_heads": s.kv_heads, "head_dim": s.head_dim, "vocab_size": s.vocab}[key]
        assert type(v) is int and lo <= v <= hi
    assert s.heads % s.kv_heads == 0 and isinstance(s.tie_word_embeddings, bool)
    assert sum(r * c for r, c in s.linear_shapes().values()) * s.layers <= MAX_MODEL_WEIGHTS
    if field in FIELDS and value is not None:
        assert type(value) is int  # never a string, float, bool or list accepted


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from([*FIELDS, "tie_word_embeddings"]), value=json_values)
def test_random_config_values_cli(field, value, capsys):
    """Through ``simulate --model cfg.json``: exit 0 only for the base model's own shapes."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "base.json").write_text(json.dumps(BASE))
        (root / "cfg.json").write_text(json.dumps(dict(BASE, **{field: value})))
        argv = ["simulate", "--synthetic", f"{root / 'base.json'}[1]:sparsity=0.5", "--context", "4", "--model", root / "cfg.json", "--out", root / "o"]
        run(argv, root, capsys)


# ----------------------------------------------------------------------------- --context / --batch / --tokens
numbers = st.one_of(st.integers(1, 64), st.sampled_from([0, -1, 2**24, 2**24 + 1, 2**31, 2**62, 2**63 - 1, 10**15, 9 * 10**18]), st.integers(-(2**64), 2**64))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(context=numbers, batch=st.one_of(st.none(), st.just(1), numbers), tokens=st.lists(numbers, min_size=1, max_size=3))
def test_random_context_batch_tokens(context, batch, tokens, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        argv = [
            "simulate",
            "--synthetic",
            "smollm2-135m[1]:sparsity=0.5",
            "--mode",
            "dense",
            "--context",
            context,
            "--tokens",
            ",".join(map(str, tokens)),
            "--out",
            root / "o",
        ]
        if batch is not None:
            argv[-2:-2] = ["--batch", batch]
        rc = run(argv, root, capsys)
        if rc == 0:  # never on nonsense, and then every count is a sane non-negative number
            b = 1 if batch is None else batch
            assert 0 <= context <= 2**24 and 1 <= b <= 2**24 and all(1 <= t <= 2**24 and t % b == 0 for t in tokens)
            dec = pd.read_csv(root / "o" / "decoder.csv").select_dtypes("number").drop(columns=["block"])
            assert (dec >= 0).all().all() and np.isfinite(dec.to_numpy(float)).all()
            summary = json.loads((root / "o" / "summary.json").read_text())
            assert all(t["e2e_cycles"] > 0 for t in summary["totals"].values())
