"""Training throughput as the run sees it: images/s of the training loop and the share of that time the host spends
between batches, both logged per epoch (`train/images_per_s`, `train/host_gap`) and kept in `<run dir>/throughput.json`
at the end of the fit.

Only training batches count, after `warmup_steps` batches of the run (cuDNN autotuning and worker start-up are left
out). A segment runs from a batch start to the last batch end before validation, the end of the epoch or of the fit,
so validation and checkpointing are not in it. Images are counted over all ranks. The host gap is the time between the
end of one batch and the start of the next, where Lightning fetches the batch and copies it to the device. On a CPU it
is the loader wait. On a GPU it is an upper bound on it: the host runs ahead of the device, and a copy from pageable
(unpinned) memory first waits for the previous step's kernels
(docs/performance.md, "Bare step vs the training loop"). Whether the loader keeps up is answered by
`bench/gpu_check.py`, which runs the loader alone. On a GPU, a segment closes after a device synchronisation, so the
queued kernels are in the time.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback

from common import atomic


def _sync(module) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class TrainingThroughput(Callback):
    def __init__(self, warmup_steps: int = 5, filename: str = "throughput.json"):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps, self.filename = int(warmup_steps), filename
        self._batches_seen = 0
        self.images, self.seconds, self.gap_seconds, self.steps = 0, 0.0, 0.0, 0
        self._mark: float | None = None  # the start of the open segment, then the end of its latest batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._batches_seen += 1
        if self._batches_seen <= self.warmup_steps:
            return
        if self._mark is None:  # a segment opens: the device's queue is drained first
            _sync(pl_module)
            self._mark = time.perf_counter()
        else:
            self.gap_seconds += now - self._mark
        self.images += int(batch[-1].shape[0]) * trainer.world_size  # batch[-1] = the labels
        self.steps += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._mark is not None:
            now = time.perf_counter()
            self.seconds += now - self._mark
            self._mark = now

    # a segment closes before validation (Lightning validates before on_train_epoch_end), at the end of the epoch and
    # of the fit (max_steps can end it inside an epoch); checkpoint callbacks run after these hooks
    def on_validation_start(self, trainer, pl_module) -> None:
        self._close_segment(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close_segment(pl_module)
        if self.seconds > 0:
            pl_module.log("train/images_per_s", self.images_per_s, sync_dist=False)
            pl_module.log("train/host_gap", self.host_gap, sync_dist=False)

    def on_train_end(self, trainer, pl_module) -> None:
        self._close_segment(pl_module)
        if trainer.is_global_zero:
            atomic.write_json(Path(trainer.default_root_dir) / self.filename, self.summary())

    def _close_segment(self, pl_module) -> None:
        """Add the kernels still queued after the last batch (a GPU runs behind the host), then close."""
        if self._mark is None:
            return
        if pl_module.device.type == "cuda":
            _sync(pl_module)
            self.seconds += time.perf_counter() - self._mark
        self._mark = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def host_gap(self) -> float:
        return self.gap_seconds / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict:
        measured = self.seconds > 0
        return {"images_per_s": self.images_per_s if measured else None,
                "host_gap_fraction": self.host_gap if measured else None,
                "images": self.images, "steps": self.steps, "seconds": self.seconds,
                "warmup_steps": self.warmup_steps}
