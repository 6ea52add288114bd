"""The glue to lm-eval 0.4: a task's own config from the installed YAML (optionally fed from a local
JSONL file), hub access switched off, and the task objects built before any model work.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from besa_common.errors import UserError
from pruning.zeroshot.tasks import TASKS


def task_config(task: str, data_file: Path | None = None, cache_dir: Path | None = None) -> dict:
    """lm-eval's own config for ``task`` (from the installed YAML); with ``data_file``, fed from that JSONL."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml  # resolves include: and !function like lm-eval does

    spec = TASKS[task]
    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / spec.yaml, resolve_func=True)
    for key in ("tag", "group"):
        cfg.pop(key, None)
    cfg["num_fewshot"] = 0  # zero-shot, as in the BESA paper
    if data_file is not None:
        cfg.update(
            dataset_path="json",
            dataset_name=None,
            dataset_kwargs={"data_files": {spec.split: str(data_file)}, **({"cache_dir": str(cache_dir)} if cache_dir else {})},
            training_split=None,  # zero-shot: no few-shot pool needed
            validation_split=spec.split if spec.split == "validation" else None,
            test_split=spec.split if spec.split == "test" else None,
        )
    return cfg


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No hub access inside: env vars for subprocesses + the flags libraries already read at import."""
    import datasets.config
    import huggingface_hub.constants as hub

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    saved = (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    hub.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _build_task(task: str, cfg: dict, source: str):
    from lm_eval.api.task import ConfigurableTask

    try:
        return ConfigurableTask(config=cfg)  # loads the dataset now, so failures name the task
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if source.startswith("hub:"):
            spec = TASKS[task]
            raise UserError(
                f"task {task}: standard dataset {source[4:]} is not reachable offline ({type(exc).__name__}); "
                f"pass --task-data DIR with DIR/{task}/{' + '.join(spec.files)}"
            ) from None
        raise UserError(f"task {task}: lm-eval could not load {source} ({type(exc).__name__}: {first})") from None


def build_tasks(
    tasks: list[str], task_data: Path | None, rows: dict[str, list[dict]], tmp: Path, sources: dict[str, str] | None = None
) -> tuple[list, dict[str, str]]:
    """lm-eval task objects for ``tasks`` and where each one's data came from (local file or ``hub:<dataset>``).

    A task with checked ``rows`` (from ``task_data`` or the shipped data) has them written to
    ``tmp/<task>.jsonl`` and fed to its own config; its source is ``sources[task]`` (default
    ``task_data/<task>/<file>``).  Any other task reads its standard dataset from the local Hugging
    Face cache.
    """
    task_objs, srcs = [], {}
    for t in tasks:
        if t in rows:
            f = tmp / f"{t}.jsonl"
            f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[t]), encoding="utf-8")
            cfg = task_config(t, f, cache_dir=tmp / "hf-datasets")
            srcs[t] = (sources or {}).get(t) or str(Path(task_data) / t / TASKS[t].files[0])
        else:
            cfg = task_config(t)
            srcs[t] = f"hub:{cfg['dataset_path']}" + (f"/{cfg['dataset_name']}" if cfg.get("dataset_name") else "")
        task_objs.append(_build_task(t, cfg, srcs[t]))
    return task_objs, srcs
