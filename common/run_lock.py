"""One run per run dir: a lock file held by the run's global rank 0, refreshed by a heartbeat.

A second run on the same dir refuses with who holds it. A lock is stale when its process is gone (same host) or its
heartbeat is older than `stale_after_s` (a requeued job lands on another host and cannot see the old process);
taking over a stale lock is logged. The ranks Lightning launches into the same dir do not take the lock: only the
process whose LOCAL_RANK, NODE_RANK, RANK and SLURM_PROCID are all 0 (or unset) does.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from common import atomic

log = logging.getLogger(__name__)
LOCK_NAME = ".run.lock"
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID", "GROUP_RANK")


class RunDirBusy(RuntimeError):
    """Another live run holds this run dir."""


def is_launching_process() -> bool:
    """True for the global rank 0 that starts a run (not for ranks launched into it)."""
    return all(os.environ.get(v, "0") in ("0", "") for v in RANK_VARIABLES)


class RunDirLock:
    def __init__(self, run_dir, stale_after_s: float = 300.0, heartbeat_s: float = 30.0, name: str = LOCK_NAME):
        self.path = Path(run_dir) / name  # `name`: another lock in the same dir (a gallery file's own lock)
        self.stale_after_s, self.heartbeat_s = float(stale_after_s), float(heartbeat_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}

    def _stale_reason(self, info: dict | None, mtime: float) -> str | None:
        if info is None:  # unreadable: a holder killed while creating it, or garbage
            return "unreadable lock file" if time.time() - mtime > self.heartbeat_s else None
        if info.get("host") == self._info["host"] and not atomic.pid_alive(int(info.get("pid", -1))):
            return f"process {info.get('pid')} on this host is gone"
        age = time.time() - float(info.get("heartbeat", mtime))
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s (holder {info.get('pid')} on {info.get('host')})"
        return None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    info, mtime = json.loads(self.path.read_text()), self.path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                except (OSError, ValueError):
                    info, mtime = None, self.path.stat().st_mtime
                reason = self._stale_reason(info, mtime)
                if reason is None:
                    info = info or {"pid": "?", "host": "?"}  # a lock still being written
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("started", mtime))))
                    raise RunDirBusy(
                        f"run dir {self.path.parent} is in use by process {info.get('pid')} on {info.get('host')} "
                        f"(since {since}); two runs on one dir would mix their checkpoints, logs and metrics. Wait "
                        f"for it, choose another run_name, or delete {self.path} if that run is really gone.") from None
                log.warning("taking over the stale lock %s: %s", self.path, reason)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**self._info, "heartbeat": time.time()}, f)
            self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
            self._thread.start()
            return self
        raise RunDirBusy(f"could not take the lock {self.path} (it keeps changing hands)")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.path.exists():
                return
            atomic.write_json(self.path, {**self._info, "heartbeat": time.time()})

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if int(json.loads(self.path.read_text()).get("pid", -1)) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
