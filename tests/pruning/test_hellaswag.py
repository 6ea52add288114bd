"""The shipped HellaSwag data: digest, layout <-> HF rows, lm-eval's own preprocessing of the rows,
the seeded ``--limit`` subsets, the shared-context scorer against HFLM, and ``besa eval --tasks
hellaswag`` offline on the tiny model (and, slow, on SmolLM2)."""

from __future__ import annotations

import bz2
import json
import math
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besa_common.errors import UserError
from besa_common.paired import align, paired_difference
from pruning.zeroshot import hellaswag as hs
from pruning.zeroshot.subset import subset_ids


@pytest.fixture(scope="module")
def rows():
    return hs.read_shipped()


def test_shipped_file_digest_and_readme_agree():
    assert hs.file_sha256(hs.DATA_FILE) == hs.SHA256
    readme = (hs.DATA_DIR / "README.md").read_text()
    assert hs.SHA256 in readme  # the documented digest is the checked one
    lic = (hs.DATA_DIR / "LICENSE").read_text()
    assert "Copyright (c) 2019 Rowan Zellers" in lic and lic.count("MIT License") == 2


def test_shipped_rows_round_trip_the_file_exactly(rows):
    assert len(rows) == hs.N_TASKS == 10042
    assert sum(r["source"] == "wikihow" for r in rows) == 6799  # the release's WikiHow / ActivityNet split
    assert sum(r["source"] == "activitynet" for r in rows) == 3243
    assert all(r["ctx_b"] == "" for r in rows if r["source"] == "wikihow")
    assert all(r["ctx_b"] for r in rows if r["source"] == "activitynet")  # every ActivityNet context ends in a fragment
    text = bz2.decompress(hs.DATA_FILE.read_bytes()).decode("utf-8")
    assert hs.format_layout(rows) == text
    assert [r["ind"] for r in rows] == list(range(10042))


def test_first_task_endings_label_and_lmeval_query(rows):
    """Task 0 by hand (the release's ind 24): four endings and label unchanged, and lm-eval's own
    process_docs capitalises the rebuilt ctx_b as it does on the released row."""
    import datasets
    from lm_eval.tasks.hellaswag.utils import process_docs

    r = rows[0]
    assert (r["activity_label"], r["ctx_a"], r["ctx_b"], r["label"]) == ("Roof shingle removal", "A man is sitting on a roof.", "he", "3")
    assert r["endings"] == [
        "is using wrap to wrap a pair of skis.",
        "is ripping level tiles off.",
        "is holding a rubik's cube.",
        "starts pulling up roofing on a roof.",
    ]
    doc = process_docs(datasets.Dataset.from_list([r]))[0]
    assert doc["query"] == "Roof shingle removal: A man is sitting on a roof. He"
    assert doc["choices"] == r["endings"] and doc["gold"] == 3


def test_every_task_round_trips_through_lmeval_process_docs(rows):
    """For every shipped task, lm-eval's process_docs keeps the label and the four endings (up to its
    own bracket removal), and its query is the layout context with at most the ctx_b capital changed."""
    import datasets
    from lm_eval.tasks.hellaswag.utils import preprocess, process_docs

    docs = process_docs(datasets.Dataset.from_list(rows))
    changed = 0
    for r, d in zip(rows, docs):
        assert d["gold"] == int(r["label"])
        assert d["choices"] == [preprocess(e) for e in r["endings"]]
        raw = preprocess(f"{r['activity_label']}: {r['ctx']}")
        if d["query"] != raw:
            changed += 1
            assert d["query"].lower() == raw.lower() and r["source"] == "activitynet"
    assert 3000 < changed <= 3243  # only ActivityNet rows, through ctx_b.capitalize()


@settings(max_examples=60, deadline=None)
@given(
    label=st.sampled_from(["Health", "Roof shingle removal", "Sumo"]),
    sentences=st.lists(st.from_regex(r"[A-Z][a-z]{1,8}( [a-z]{1,8}){0,5}\.", fullmatch=True), min_size=1, max_size=3),
    frag=st.from_regex(r"[a-z]{1,8}( [a-z]{1,8}){0,2}", fullmatch=True),
    endings=st.lists(st.from_regex(r"[a-z][a-z ,']{0,30}[a-z.]", fullmatch=True), min_size=4, max_size=4),
    gold=st.integers(0, 3),
)
def test_layout_round_trip_property(label, sentences, frag, endings, gold):
    wikihow = label in hs.WIKIHOW_CATEGORIES
    ctx_a, ctx_b = " ".join(sentences), ("" if wikihow else frag)
    row = {"activity_label": label, "ctx_a": ctx_a, "ctx_b": ctx_b, "endings": endings, "label": str(gold)}
    back = hs.parse_layout(hs.format_layout([row, row]))
    for b in back:
        assert {k: b[k] for k in row} == row
        assert b["ctx"] == (ctx_a + " " + ctx_b if ctx_b else ctx_a)


@pytest.mark.parametrize(
    "text, msg",
    [
        ("a: b\n0\nx\ny\nz\n", "not a positive multiple of 6"),
        ("no colon here\n0\nx\ny\nz\nw\n", "line 1: expected '<activity_label>: <context>'"),
        ("a: b\n4\nx\ny\nz\nw\n", "line 2: label '4' is not 0-3"),
        ("a: b\n1\nx\n \nz\nw\n", "line 4: ending 1 is empty"),
        ("", "not a positive multiple"),
    ],
)
def test_malformed_layout_is_one_line_error(text, msg):
    with pytest.raises(UserError, match=msg):
        hs.parse_layout(text, "f.txt")


def test_damaged_file_fails_its_digest(tmp_path):
    bad = tmp_path / "hellaswag_val_full.txt.bz2"
    data = bytearray(hs.DATA_FILE.read_bytes())
    data[1000] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError, match="has sha256 .* expected 50b63789"):
        hs.read_layout(bad, hs.SHA256)
    with pytest.raises(UserError, match="not bzip2-compressed UTF-8"):
        hs.read_layout(bad)  # without the digest check the damage is still caught
    with pytest.raises(UserError, match="is missing"):
        hs.read_layout(tmp_path / "absent.txt.bz2")


# --------------------------------------------------------------------------- seeded --limit subsets


@settings(max_examples=50, deadline=None)
@given(n_total=st.integers(1, 3000), a=st.integers(1, 3000), b=st.integers(1, 3000), seed=st.integers(0, 2**31))
def test_subset_is_deterministic_sorted_and_nested(n_total, a, b, seed):
    small, large = subset_ids(n_total, min(a, b), seed), subset_ids(n_total, max(a, b), seed)
    assert small == subset_ids(n_total, min(a, b), seed)
    assert small == sorted(set(small)) and len(small) == min(a, b, n_total)
    assert set(small) <= set(large)
    assert all(0 <= i < n_total for i in large)


def test_subset_pinned_and_seed_sensitive():
    # Pinned so that a NumPy change of the PCG64 stream (which would change every --limit run) is noticed.
    assert subset_ids(10042, 5, 0) == [2649, 2738, 3092, 5975, 8742]
    assert subset_ids(10042, 5, 1) != subset_ids(10042, 5, 0)
    assert subset_ids(10, None) == subset_ids(10, 10) == subset_ids(10, 99) == list(range(10))
    with pytest.raises(UserError):
        subset_ids(10, 0)


# --------------------------------------------------------------------------- paired differences


def test_paired_difference_hand_case():
    a = [1, 1, 0, 1, 0, 1]
    b = [1, 0, 0, 0, 1, 1]
    d = paired_difference(a, b)  # differences 0, 1, 0, 1, -1, 0: mean 1/6
    assert d["n"] == 6 and d["a_only"] == 2 and d["b_only"] == 1
    assert d["diff"] == pytest.approx(1 / 6)
    var = sum((x - 1 / 6) ** 2 for x in [0, 1, 0, 1, -1, 0]) / 5
    assert d["se"] == pytest.approx(math.sqrt(var / 6))
    assert d["ci95"] == pytest.approx([1 / 6 - 1.96 * d["se"], 1 / 6 + 1.96 * d["se"]])
    assert align([5, 1, 3], [1, 0, 1], [3, 4, 5], [0, 0, 1]) == ([3, 5], [1, 1], [0, 1])
    with pytest.raises(UserError):
        paired_difference([1], [1, 0])


# --------------------------------------------------------------------------- scorers and the CLI


def _requests(lm, rows):
    import datasets
    from lm_eval.tasks.hellaswag.utils import process_docs

    out = []
    for d in process_docs(datasets.Dataset.from_list(rows)):
        for c in d["choices"]:
            out.append(((d["query"], " " + c), *lm._encode_pair(d["query"], " " + c)))
    return out


def _tiny(max_pos=2048):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_pos,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def test_shared_context_scorer_matches_hflm_on_tiny_model(rows):
    from lm_eval.models.huggingface import HFLM

    from pruning.zeroshot.shared_context import SharedContextLM
    from tests.pruning.test_zeroshot import byte_tokenizer

    model, tok = _tiny(), byte_tokenizer()
    sample = [rows[i] for i in subset_ids(len(rows), 12, 3)]
    ref_lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4)
    reqs = _requests(ref_lm, sample)
    ref = ref_lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    got = SharedContextLM(pretrained=model, tokenizer=tok, batch_size=4)._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert len(got) == len(ref) == 48
    for (a, ga), (b, gb) in zip(ref, got):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-4) and ga == gb  # byte tokens: sums of ~300 float32 terms


def test_besa_eval_hellaswag_offline_on_tiny_model(tmp_path, capsys):
    """The command of the issue on a fresh model directory: no --task-data, the shipped data, a
    seeded subset, acc / acc_norm with lm-eval's standard errors and per-example rows."""
    from besa.cli import main
    from tests.pruning.test_zeroshot import byte_tokenizer

    d = tmp_path / "tiny"
    _tiny().save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    outs = {}
    for scorer in ("hflm", "shared"):
        rc = main(["eval", "--model", str(d), "--no-ppl", "--tasks", "hellaswag", "--limit", "5", "--json", "--zs-scorer", scorer, "--zs-batch-size", "4"])
        assert rc == 0
        outs[scorer] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tasks"]["hellaswag"]
    r = outs["hflm"]
    assert r["n"] == 5 and r["n_total"] == 10042 and r["split"] == "validation"
    assert r["data"].endswith("pruning/tasks/hellaswag/hellaswag_val_full.txt.bz2")
    assert r["ids"] == subset_ids(10042, 5, 0) and r["subset"] == {"rule": "seeded", "seed": 0, "limit": 5}
    assert r["acc"] == pytest.approx(sum(r["correct"]) / 5) and r["acc_norm"] == pytest.approx(sum(r["correct_norm"]) / 5)
    for key in ("acc", "acc_norm"):
        p = r[key]
        assert r[f"{key}_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 4))
    assert {k: outs["shared"][k] for k in ("ids", "correct", "correct_norm")} == {k: r[k] for k in ("ids", "correct", "correct_norm")}


def test_task_data_still_overrides_the_shipped_data(tmp_path):
    from pruning import zeroshot
    from tests.pruning.test_zeroshot import byte_tokenizer

    r = zeroshot.run_tasks(_tiny(), byte_tokenizer(), ["hellaswag"], zeroshot.FIXTURES, batch_size=4, limit=3, per_example=True)["hellaswag"]
    assert r["n_total"] == 10 and r["n"] == 3 and r["data"].endswith("fixtures/hellaswag/hellaswag_val.jsonl")
    assert r["ids"] == subset_ids(10, 3, 0)


def test_shipped_data_checked_before_model_load(tmp_path, capsys, monkeypatch):
    import pruning.models
    import pruning.zeroshot.tasks
    from besa.cli import main

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the shipped data was checked")

    bad = tmp_path / "hellaswag_val_full.txt.bz2"
    shutil.copy(hs.DATA_FILE, bad)
    bad.write_bytes(bad.read_bytes()[:-10])
    monkeypatch.setattr(pruning.models, "load_model", no_load)
    monkeypatch.setitem(pruning.zeroshot.tasks.SHIPPED, "hellaswag", (lambda: hs.read_layout(bad, hs.SHA256), bad))
    rc = main(["eval", "--model", "smollm2-135m", "--no-ppl", "--tasks", "hellaswag", "--limit", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "expected 50b63789" in err


@pytest.mark.slow
def test_besa_eval_hellaswag_smollm2(capsys):
    from besa.cli import main

    rc = main(["eval", "--model", "smollm2-135m", "--no-ppl", "--tasks", "hellaswag", "--limit", "5", "--json", "--zs-scorer", "shared"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tasks"]["hellaswag"]
    assert r["n"] == 5 and r["ids"] == subset_ids(10042, 5, 0) and r["acc_stderr"] is not None


@pytest.mark.slow
def test_shared_context_scorer_matches_hflm_on_smollm2(rows):
    """1e-4 on every log-likelihood and identical acc / acc_norm per task on a seeded sample."""
    from lm_eval.models.huggingface import HFLM

    from pruning.models import load_model
    from pruning.zeroshot.shared_context import SharedContextLM

    model, tok = load_model("smollm2-135m")
    model.eval()
    sample = [rows[i] for i in subset_ids(len(rows), 15, 7)]
    ref_lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8)
    reqs = _requests(ref_lm, sample)
    ref = ref_lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    got = SharedContextLM(pretrained=model, tokenizer=tok, batch_size=8)._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert max(abs(a[0] - b[0]) for a, b in zip(ref, got)) < 1e-4
    for k in range(len(sample)):
        lens = [len(r[0][1]) for r in reqs[4 * k : 4 * k + 4]]
        pick = [max(range(4), key=lambda j, s=s: s[4 * k + j][0]) for s in (ref, got)]
        pick_norm = [max(range(4), key=lambda j, s=s: s[4 * k + j][0] / lens[j]) for s in (ref, got)]
        assert pick[0] == pick[1] and pick_norm[0] == pick_norm[1]
