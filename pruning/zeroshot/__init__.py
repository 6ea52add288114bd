"""Zero-shot accuracy of an in-memory (masked, optionally quantized) model through lm-eval 0.4.

The six tasks of the BESA paper -- PIQA, BoolQ, HellaSwag, WinoGrande, ARC-easy, ARC-challenge --
run through lm-eval's own code paths: its task YAMLs (prompts, choices, metrics, splits) taken from
the installed ``lm_eval`` package, its ``HFLM`` wrapper around the model object we already hold
(no re-download, no hub), and its ``simple_evaluate``.  Hub access is switched off for the whole
run (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``).

Data, two ways:

* no ``task_data``: HellaSwag reads the validation set shipped in the package
  (:mod:`~pruning.zeroshot.hellaswag`, 10,042 tasks, sha256-checked) through the same local-file
  path as below; the other tasks use the standard task definitions, unchanged, which works when
  their datasets sit in the local Hugging Face cache (the registries this project can reach ship
  none of them);
* ``task_data=DIR``: every task reads local files in the format its authors released, one folder
  per task (:data:`TASKS` lists the files).  The rows are checked, converted to the row schema of
  the Hugging Face dataset the lm-eval YAML was written for, and fed to it through ``dataset_path:
  json`` + ``data_files``; nothing else of the task definition changes.

    DIR/piqa/valid.jsonl + valid-labels.lst        PIQA release (yonatanbisk.com/piqa): {goal, sol1, sol2}; labels 0/1
    DIR/boolq/dev.jsonl                            BoolQ release (google-research-datasets/boolean-questions): {question, title, answer: bool, passage}
    DIR/hellaswag/hellaswag_val.jsonl              HellaSwag release (rowanz/hellaswag): {activity_label, ctx_a, ctx_b, endings[4], label}
    DIR/winogrande/dev.jsonl                       WinoGrande 1.1 release (allenai/winogrande): {sentence with one "_", option1, option2, answer: "1"|"2"}
    DIR/arc_easy/ARC-Easy-Test.jsonl               ARC-V1-Feb2018 release (allenai): {id, question: {stem, choices: [{text, label}]}, answerKey}
    DIR/arc_challenge/ARC-Challenge-Test.jsonl     same, Challenge set

Splits are lm-eval's: the validation split for PIQA, BoolQ, HellaSwag and WinoGrande (their test
labels are hidden), the test split for ARC.  Metrics are the task's own: ``acc`` for all six,
``acc_norm`` (log-likelihood per byte of the answer) where the task defines it (PIQA, HellaSwag,
ARC); for BoolQ and WinoGrande ``acc_norm`` is reported as ``None``.  Standard errors are lm-eval's
(``sqrt(p(1-p)/(n-1))`` for a mean).

``limit``: a seeded subset of the local rows, nested across sizes (:mod:`~pruning.zeroshot.subset`).

Modules, one job each: :mod:`~pruning.zeroshot.tasks` (the tasks and their native-file
validators), :mod:`~pruning.zeroshot.hellaswag` (the shipped HellaSwag data),
:mod:`~pruning.zeroshot.subset` (the ``--limit`` subsets), :mod:`~pruning.zeroshot.lmeval` (the
lm-eval glue), :mod:`~pruning.zeroshot.shared_context` (the faster scorer),
:mod:`~pruning.zeroshot.runner` (running them on a model, result tables, the ``besa eval`` flags).
Their public names are re-exported here.
"""

from pruning.zeroshot.lmeval import build_tasks, offline, task_config
from pruning.zeroshot.runner import add_arguments, format_comparison, format_table, run_tasks
from pruning.zeroshot.tasks import DEFAULT_TASKS, FIXTURES, TASKS, TaskSpec, check_task_data, load_task_rows, parse_tasks

__all__ = [
    "DEFAULT_TASKS",
    "FIXTURES",
    "TASKS",
    "TaskSpec",
    "add_arguments",
    "build_tasks",
    "check_task_data",
    "format_comparison",
    "format_table",
    "load_task_rows",
    "offline",
    "parse_tasks",
    "run_tasks",
    "task_config",
]
