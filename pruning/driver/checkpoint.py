"""Block driver, stage 2: per-block checkpoints for resume (``DIR/checkpoint/``).

Each finished block's masks (plus the weights the method or ``--weight-update`` changed, after masking
and before quantization, and with ``wbits`` the final quantized weights) go to
``DIR/checkpoint/block-NNN.safetensors``; ``state.json`` holds a fingerprint of the run's settings and
the number of finished blocks, so a different run refuses the checkpoint instead of mixing results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from besa_common.digest import json_digest
from besa_common.errors import UserError
from besa_common.fileio import atomic_write_bytes, atomic_write_json
from pruning.driver.config import DriverConfig
from pruning.methods.base import PruningMethod

CHECKPOINT_VERSION = 2  # 2: pre-quantization updated weights ("update.") stored apart from final ones


def fingerprint(method: PruningMethod, config: DriverConfig, calib: torch.Tensor, model_id: Any, device: torch.device) -> str:
    opts = getattr(method, "config", None)
    opts = dataclasses.asdict(opts) if dataclasses.is_dataclass(opts) else repr(opts)
    cfg = dataclasses.asdict(config)
    cfg.pop("progress")
    cfg.pop("offload_acts")  # where buffers live does not change any number
    cfg.pop("device")
    return json_digest(  # sha256 of the canonical JSON (besa_common.digest): checkpoints from before resume
        {
            "version": CHECKPOINT_VERSION,
            "method": method.name,
            "options": opts,
            "config": cfg,
            "device": device.type,
            "model": model_id,
            "calib": hashlib.sha256(calib.cpu().numpy().tobytes()).hexdigest(),
            "shape": list(calib.shape),
        }
    )


class Checkpoint:
    """``DIR/checkpoint/``: ``state.json`` (fingerprint, blocks done) + one safetensors per block."""

    def __init__(self, root: Path, fingerprint: str):
        self.root = root
        self.fingerprint = fingerprint
        self.done = 0
        state = root / "state.json"
        if state.is_file():
            try:
                st = json.loads(state.read_text())
            except ValueError:
                raise UserError(f"{state} is corrupt; delete {root} to start over") from None
            if st.get("fingerprint") != fingerprint:
                raise UserError(f"{root} holds a checkpoint of a different run (model, method, options or calibration differ); delete it or use another --out")
            self.done = int(st.get("done", 0))

    def path(self, i: int) -> Path:
        return self.root / f"block-{i:03d}.safetensors"

    def save(
        self,
        i: int,
        keep: dict[str, torch.Tensor],
        updates: dict[str, torch.Tensor],
        finals: dict[str, torch.Tensor],
        qparams: dict[str, torch.Tensor],
        record: dict,
    ) -> None:
        """``updates``: weights the method changed, after masking, before quantization (what
        ``DIR/weights.safetensors`` stores); ``finals``: every linear's final weights when quantized."""
        from safetensors.torch import save

        tensors = {f"keep.{n}": k.to(torch.uint8).contiguous() for n, k in keep.items()}
        tensors.update({f"update.{n}": w.detach().cpu().contiguous() for n, w in updates.items()})
        tensors.update({f"weight.{n}": w.detach().cpu().contiguous() for n, w in finals.items()})
        tensors.update({f"quant.{n}": q.detach().cpu().contiguous() for n, q in qparams.items()})
        atomic_write_bytes(self.path(i), save(tensors, metadata={"record": json.dumps(record, default=float)}))
        self.done = i + 1
        atomic_write_json(self.root / "state.json", {"fingerprint": self.fingerprint, "done": self.done})

    def load(self, i: int):
        from safetensors import safe_open

        keep, updates, finals, qparams = {}, {}, {}, {}
        try:
            with safe_open(str(self.path(i)), framework="pt") as fh:
                record = json.loads((fh.metadata() or {}).get("record", "{}"))
                for key in fh.keys():
                    kind, name = key.split(".", 1)
                    t = fh.get_tensor(key)
                    if kind == "keep":
                        keep[name] = t.bool()
                    elif kind == "update":
                        updates[name] = t
                    elif kind == "weight":
                        finals[name] = t
                    else:
                        qparams[name] = t
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"checkpoint {self.path(i)} is unreadable ({type(exc).__name__}); delete {self.root} to start over") from None
        return keep, updates, finals, qparams, record

    def update_value(self, i: int, name: str):
        """Block ``i``'s saved pre-quantization weight of local linear ``name`` as a numpy array."""
        from safetensors import safe_open

        with safe_open(str(self.path(i)), framework="numpy") as fh:
            return fh.get_tensor(f"update.{name}")
