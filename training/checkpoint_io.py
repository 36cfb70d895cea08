"""Checkpoints that survive any kill: atomic writes, weights-only loading, and choosing what to resume from.

- `AtomicCheckpointIO`: Lightning's checkpoint plug-in writing through `common.atomic` (temporary file in the
  checkpoint's own directory, fsync, rename: Lightning's default stages the file in $TMPDIR, and a move across
  filesystems is a copy that a kill can tear) and always loading with `weights_only=True`, whatever
  TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says.
- `verify_checkpoint`: a complete file (zip directory, every member's CRC, the pickle present) without unpickling.
- `newest_valid_checkpoint`: the newest checkpoint of a run that verifies, with the reasons others were skipped.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from common import atomic

log = logging.getLogger(__name__)
STEP_FILE = re.compile(r"step\d+\.ckpt")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`keep_steps`: after a `step<N>.ckpt` is written, only the newest `keep_steps` of them stay (Lightning's own
    top-k forgets the files of an attempt that was killed before it could prune them); None keeps all."""

    def __init__(self, keep_steps: int | None = None):
        super().__init__()
        self.keep_steps = keep_steps

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic.write_bytes(path, buffer.getvalue())
        path = Path(path)
        if self.keep_steps and STEP_FILE.fullmatch(path.name):
            steps = sorted(p for p in path.parent.glob("step*.ckpt") if STEP_FILE.fullmatch(p.name))
            for old in steps[:-self.keep_steps]:  # zero-padded step numbers: name order is step order
                old.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        path = Path(path)
        problem = verify_checkpoint(path)
        if problem:
            raise RuntimeError(f"checkpoint {path} cannot be loaded: {problem}")
        # explicit weights_only=True: the environment variable only overrides torch.load when it is not passed
        return torch.load(path, map_location=map_location or (lambda storage, loc: storage), weights_only=True)


def checkpoint_step(path) -> int | None:
    """The global step a checkpoint was written at (memory-mapped, weights-only), None without a path."""
    if path is None:
        return None
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("global_step", 0))


def verify_checkpoint(path) -> str | None:
    """None when `path` is a complete torch zip checkpoint, else why not (truncated, bad CRC, not a zip, ...)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
                return "no data.pkl inside (not a torch checkpoint)"
            bad = archive.testzip()
            if bad is not None:
                return f"member {bad} fails its CRC check (torn or corrupted write)"
    except FileNotFoundError:
        return "file not found"
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"not a complete zip archive ({err}); a torn or truncated write"
    return None


def newest_valid_checkpoint(ckpt_dir) -> tuple[Path | None, list[str]]:
    """(newest checkpoint of `ckpt_dir` that verifies, or None; notes on the newer ones that were skipped)."""
    candidates = sorted(Path(ckpt_dir).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    notes = []
    for path in candidates:
        problem = verify_checkpoint(path)
        if problem is None:
            return path, notes
        notes.append(f"skipped {path.name}: {problem}")
    return None, notes
