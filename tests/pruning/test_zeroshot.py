"""Zero-shot accuracy through lm-eval: native-format readers, the lm-eval glue, errors.

The fast tests use the random tiny model with a byte-level tokenizer (mechanics only): lm-eval's
accuracy is checked against log-likelihoods computed here by hand from the NATIVE files, which pins
the label orientation of every converter (PIQA's labels file, BoolQ's true/false, WinoGrande's "1"/"2",
ARC's answer keys, HellaSwag's ending index).  The slow test runs every task on SmolLM2.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from besa_common.errors import UserError
from pruning import zeroshot

FIXTURES = zeroshot.FIXTURES


def byte_tokenizer():
    """A byte-level tokenizer with exactly 256 ids (no merges), so it fits the tiny model's vocab."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(ByteLevel.alphabet())
    tk = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=alphabet[0], bos_token=alphabet[0])


@pytest.fixture(scope="module")
def tiny_results():
    """One lm-eval run of all six tasks on the tiny model (shared: lm-eval start-up costs seconds)."""
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
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    tok = byte_tokenizer()
    return model, tok, zeroshot.run_tasks(model, tok, list(zeroshot.TASKS), FIXTURES, batch_size=4, per_example=True)


def _loglik(model, tok, context: str, continuation: str) -> float:
    """Sum of log p(continuation | context), bytes as tokens (what HFLM computes for this tokenizer)."""
    import torch

    ctx, cont = tok(context)["input_ids"], tok(continuation)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)  # (T-1, V)
    return float(sum(logp[len(ctx) - 1 + j, t] for j, t in enumerate(cont)))


def _expected(model, tok, task: str) -> tuple[list[int], list[int]]:
    """Per-example (correct, correct_norm) recomputed from the native fixture files with lm-eval's prompt templates."""
    d = FIXTURES / task
    rows = [json.loads(line) for line in (d / zeroshot.TASKS[task].files[0]).read_text().splitlines() if line.strip()]
    items = []  # (list of (context, continuation, choice text), gold)
    if task == "piqa":
        labels = [int(x) for x in (d / "valid-labels.lst").read_text().split()]
        for r, g in zip(rows, labels):
            items.append(([(f"Question: {r['goal']}\nAnswer:", " " + s, s) for s in (r["sol1"], r["sol2"])], g))
    elif task == "boolq":
        for r in rows:
            ctx = f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:"
            items.append(([(ctx, " no", "no"), (ctx, " yes", "yes")], int(r["answer"])))
    elif task == "winogrande":
        for r in rows:
            i = r["sentence"].index("_")
            target = " " + r["sentence"][i + 1 :].strip()
            items.append(([(r["sentence"][:i] + o, target, target.strip()) for o in (r["option1"], r["option2"])], int(r["answer"]) - 1))
    elif task.startswith("arc"):
        for r in rows:
            ch = r["question"]["choices"]
            ctx = f"Question: {r['question']['stem']}\nAnswer:"
            items.append(([(ctx, " " + c["text"], c["text"]) for c in ch], [c["label"] for c in ch].index(r["answerKey"])))
    elif task == "hellaswag":
        from lm_eval.tasks.hellaswag.utils import preprocess

        for r in rows:
            q = preprocess(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize())
            items.append(([(q, " " + preprocess(e), preprocess(e)) for e in r["endings"]], int(r["label"])))
    acc, acc_norm = [], []
    for choices, gold in items:
        lls = [_loglik(model, tok, c, x) for c, x, _ in choices]
        acc.append(int(max(range(len(lls)), key=lambda k: lls[k]) == gold))
        normed = [ll / len(text) for ll, (_, _, text) in zip(lls, choices)]  # lm-eval: per character of the choice
        acc_norm.append(int(max(range(len(normed)), key=lambda k: normed[k]) == gold))
    return acc, acc_norm


@pytest.mark.parametrize("task", list(zeroshot.TASKS))
def test_accuracy_matches_hand_computed_loglikelihoods(tiny_results, task):
    model, tok, results = tiny_results
    r = results[task]
    correct, correct_norm = _expected(model, tok, task)
    assert r["n"] == r["n_total"] == 10
    assert r["correct"] == correct  # per example, so a flipped label mapping cannot hide behind a 50% score
    assert r["acc"] == pytest.approx(sum(correct) / 10)
    if task in ("boolq", "winogrande"):  # the standard task defines acc only
        assert r["acc_norm"] is None and r["acc_norm_stderr"] is None
    else:
        assert r["correct_norm"] == correct_norm
        assert r["acc_norm"] == pytest.approx(sum(correct_norm) / 10)
        p = r["acc_norm"]
        assert r["acc_norm_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (r["n"] - 1)))
    p = r["acc"]
    assert r["acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (r["n"] - 1)))  # lm-eval's sample stderr of a mean
    assert r["split"] == ("test" if task.startswith("arc") else "validation")
    assert r["data"].endswith(zeroshot.TASKS[task].files[0])


def test_table_lists_every_task(tiny_results):
    _, _, results = tiny_results
    table = zeroshot.format_table(results)
    for t in zeroshot.TASKS:
        assert t in table
    assert "mean acc" in table


def test_limit_caps_examples():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512
        )
    ).eval()
    r = zeroshot.run_tasks(model, byte_tokenizer(), ["piqa", "arc_easy"], FIXTURES, batch_size=2, limit=3)
    assert r["piqa"]["n"] == 3 and r["piqa"]["n_total"] == 10
    assert r["arc_easy"]["n"] == 3
    assert model.training is False


# ----------------------------------------------------------------------------- errors (no model needed)


def test_parse_tasks():
    assert zeroshot.parse_tasks("all") == list(zeroshot.TASKS)
    assert zeroshot.parse_tasks(" piqa, boolq ,piqa") == ["piqa", "boolq"]
    with pytest.raises(UserError, match="unknown task 'mmlu'"):
        zeroshot.parse_tasks("piqa,mmlu")
    with pytest.raises(UserError, match="empty"):
        zeroshot.parse_tasks(" , ")


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "tasks"
    shutil.copytree(FIXTURES, d)
    return d


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_unknown_task_is_a_user_error(data):
    with pytest.raises(UserError) as e:
        zeroshot.run_tasks(None, None, ["piqa", "openbookqa"], data)
    assert "openbookqa" in _one_line(e)


@pytest.mark.parametrize(
    "task,file",
    [
        ("piqa", "valid-labels.lst"),
        ("piqa", "valid.jsonl"),
        ("boolq", "dev.jsonl"),
        ("hellaswag", "hellaswag_val.jsonl"),
        ("winogrande", "dev.jsonl"),
        ("arc_challenge", "ARC-Challenge-Test.jsonl"),
    ],
)
def test_missing_task_data_names_task_and_file(data, task, file):
    (data / task / file).unlink()
    with pytest.raises(UserError) as e:
        zeroshot.run_tasks(None, None, [task], data)
    msg = _one_line(e)
    assert f"task {task}" in msg and file in msg and "missing" in msg


def _rewrite(path: Path, fn) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    fn(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


WRONG = {
    # the Hugging Face super_glue row layout (label 0/1) instead of BoolQ's released {answer: bool}
    "boolq": ("dev.jsonl", lambda rows: [r.update(label=int(r.pop("answer"))) for r in rows], "answer"),
    "piqa": ("valid.jsonl", lambda rows: rows[2].pop("sol2"), "sol2"),
    "winogrande": ("dev.jsonl", lambda rows: rows[0].update(answer="3"), "answer"),
    "arc_easy": ("ARC-Easy-Test.jsonl", lambda rows: rows[1].update(answerKey="E"), "answerKey"),
    # the Hugging Face ai2_arc layout (question is a string) instead of the released nested object
    "arc_challenge": ("ARC-Challenge-Test.jsonl", lambda rows: [r.update(question=r["question"]["stem"]) for r in rows], "question"),
    "hellaswag": ("hellaswag_val.jsonl", lambda rows: rows[4].update(label=7), "label"),
}


@pytest.mark.parametrize("task", list(WRONG))
def test_wrong_format_names_task_file_and_line(data, task):
    file, mutate, field = WRONG[task]
    _rewrite(data / task / file, mutate)
    with pytest.raises(UserError) as e:
        zeroshot.run_tasks(None, None, [task], data)
    msg = _one_line(e)
    assert f"task {task}" in msg and file in msg and field in msg and "line" in msg


def test_not_json_and_label_count(data):
    p = data / "winogrande" / "dev.jsonl"
    p.write_text(p.read_text() + "sentence,option1,option2\n")  # a CSV line slipped in
    with pytest.raises(UserError, match=r"task winogrande: .*dev.jsonl line 11 is not JSON"):
        zeroshot.run_tasks(None, None, ["winogrande"], data)
    lst = data / "piqa" / "valid-labels.lst"
    lst.write_text("0\n1\n")
    with pytest.raises(UserError, match=r"task piqa: .*valid-labels.lst has 2 labels but .*valid.jsonl has 10 examples"):
        zeroshot.run_tasks(None, None, ["piqa"], data)


def test_standard_dataset_unreachable_offline_is_a_user_error(tiny_llama):
    """Without --task-data the standard definition is used; offline and uncached -> one line naming the task."""
    from datasets import config as dsconfig

    if any(Path(dsconfig.HF_DATASETS_CACHE).glob("baber___piqa*")):
        pytest.skip("PIQA is in the local HF datasets cache here")
    with pytest.raises(UserError) as e:
        zeroshot.run_tasks(tiny_llama, byte_tokenizer(), ["piqa"], None)
    msg = _one_line(e)
    assert "task piqa" in msg and "baber/piqa" in msg and "--task-data" in msg


# ----------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_every_task_end_to_end_on_smollm2():
    """All six tasks through lm-eval on SmolLM2 with the fixtures (10 examples each: mechanics, not a benchmark)."""
    import torch

    from pruning.models import load_model

    torch.manual_seed(0)
    model, tok = load_model("smollm2-135m")
    r = zeroshot.run_tasks(model, tok, list(zeroshot.TASKS), FIXTURES, batch_size=8)
    assert list(r) == list(zeroshot.TASKS)
    for v in r.values():
        assert v["n"] == 10 and 0.0 <= v["acc"] <= 1.0 and v["acc_stderr"] is not None
    # The fixtures are easy common-sense items: a trained model beats chance on them overall
    # (chance over the six: 1/2, 1/2, 1/4, 1/2, 1/4, 1/4 -> mean 0.375), a random one does not.
    mean = sum(v["acc"] for v in r.values()) / len(r)
    assert mean > 0.45, zeroshot.format_table(r)


# ----------------------------------------------------------------------------- besa eval


def test_besa_eval_tasks_cli_tiny(tiny_llama, tmp_path, capsys):
    """``besa eval --tasks`` on a saved tiny model with a masks file: results under "tasks" in the JSON."""
    import numpy as np

    from besa.cli import main
    from besa_common.masks import write_masks

    d = tmp_path / "tiny"
    tiny_llama.config.max_position_embeddings = 512
    tiny_llama.save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    rng = np.random.default_rng(0)
    keep = {f"model.layers.{i}.mlp.up_proj": rng.random((160, 64)) < 0.5 for i in range(2)}
    write_masks(tmp_path / "run" / "masks.safetensors", keep, {"method": "random-test"})
    rc = main(
        [
            "eval",
            "--model",
            str(d),
            "--masks",
            str(tmp_path / "run"),
            "--no-ppl",
            "--tasks",
            "piqa,winogrande",
            "--task-data",
            str(FIXTURES),
            "--limit",
            "4",
            "--zs-batch-size",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    assert rc == 0
    table = capsys.readouterr().out
    assert "piqa" in table and "winogrande" in table and "acc_norm" in table
    res = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert list(res["tasks"]) == ["piqa", "winogrande"]
    assert res["tasks"]["piqa"]["n"] == 4 and res["tasks"]["piqa"]["n_total"] == 10
    assert res["method"] == "random-test"


def test_besa_eval_bad_task_data_fails_before_model_load(tmp_path, capsys, monkeypatch):
    import pruning.models
    from besa.cli import main

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the task files were checked")

    monkeypatch.setattr(pruning.models, "load_model", no_load)
    d = tmp_path / "data"
    shutil.copytree(FIXTURES, d)
    (d / "hellaswag" / "hellaswag_val.jsonl").write_text('{"ctx": "x"}\n')
    rc = main(["eval", "--model", "smollm2-135m", "--no-ppl", "--tasks", "all", "--task-data", str(d)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "task hellaswag" in err and "hellaswag_val.jsonl line 1" in err


@pytest.mark.slow
def test_besa_eval_all_tasks_cli_smollm2(tmp_path, capsys):
    """The documented command on the real model (fixtures, --limit 3 to stay short)."""
    from besa.cli import main

    rc = main(["eval", "--model", "smollm2-135m", "--no-ppl", "--tasks", "all", "--task-data", str(FIXTURES), "--limit", "3", "--json", "--no-progress"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(res["tasks"]) == sorted(zeroshot.TASKS)  # --json sorts keys
    assert all(v["n"] == 3 and v["n_total"] == 10 for v in res["tasks"].values())


def test_format_comparison_hand_case():
    a = {"boolq": {"acc": 0.7, "n": 10, "acc_norm": None}, "piqa": {"acc": 0.5, "n": 10, "acc_norm": 0.6}}
    b = {"piqa": {"acc": 0.25, "n": 10, "acc_norm": 0.5}}
    lines = zeroshot.format_comparison({"dense": a, "wanda": b}).splitlines()
    assert lines[0].split() == ["acc", "%", "n", "dense", "wanda"]
    assert lines[1].split() == ["piqa", "10", "50.0", "25.0"]  # paper order, not the JSON's key order
    assert lines[2].split() == ["boolq", "10", "70.0", "-"]
    assert lines[3].split() == ["mean", "60.0", "25.0"]
    assert zeroshot.format_comparison({"dense": a}, "acc_norm").splitlines()[-1].split() == ["mean", "60.0"]
