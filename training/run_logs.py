"""Per-step CSV logs that survive resume: the history is kept, and rows after the resumed step are dropped so no
step appears twice (Lightning's CSV writer deletes an existing metrics.csv when it starts)."""

from __future__ import annotations

import csv
import logging
import os

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from common import atomic

log = logging.getLogger(__name__)


def _step(row: dict) -> int | None:
    if None in row.values() or None in row:  # fields missing or extra: a torn line
        return None
    try:
        return int(float(row.get("step", "")))
    except ValueError:
        return None  # a torn last line of a killed run


class ResumableCSVWriter(ExperimentWriter):
    def __init__(self, log_dir: str, resume_step: int | None = None):
        self.metrics, self.metrics_keys = [], []
        self.hparams = {}
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        from lightning_fabric.utilities.cloud_io import get_filesystem

        self._fs = get_filesystem(log_dir)
        os.makedirs(log_dir, exist_ok=True)
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            text = f.read()
        reader = csv.DictReader(text.splitlines())
        keys, rows = list(reader.fieldnames or []), list(reader)
        if rows and not text.endswith("\n"):
            rows = rows[:-1]  # the last line of a killed run may be cut anywhere
        kept = [r for r in rows if _step(r) is not None and (resume_step is None or _step(r) <= resume_step)]
        if resume_step is None:
            log.warning("%s exists and this run does not resume: its rows are kept, new rows follow them",
                        self.metrics_file_path)
        elif len(kept) != len(rows):
            log.info("%s: dropped %d rows logged after the resumed step %d", self.metrics_file_path,
                     len(rows) - len(kept), resume_step)
        with atomic.atomic_write(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = keys


def make_csv_logger_resumable(logger: CSVLogger, resume_step: int | None) -> CSVLogger:
    """Give a configured CSVLogger the history-keeping writer (before its first use)."""
    logger._experiment = ResumableCSVWriter(logger.log_dir, resume_step)
    return logger
