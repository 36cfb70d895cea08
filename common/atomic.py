"""The one write path of the project: temporary file in the target's directory, flush + fsync, rename.

A reader sees the previous complete file or the new complete file, never a torn one: the temporary file lives in the
same directory (a rename across filesystems would be a copy), and a failed writer (exception, full disk) removes it.
A killed writer cannot clean up; its temporary file carries its process id, and the next write of the same target
removes temporaries whose process is gone, so litter never accumulates.

Test hook: with `FACE_TEST_KILL_WRITER_AFTER_BYTES=N` in the environment a writer kills its own process with SIGKILL
after writing N bytes (the chaos test uses it to kill a run in the middle of a checkpoint write).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

KILL_AFTER_BYTES_ENV = "FACE_TEST_KILL_WRITER_AFTER_BYTES"


def _file_mode() -> int:
    """What `open()` would give a new file: 0o666 minus the process umask (mkstemp alone gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporaries of `path` left by writers that no longer run (same host); returns what was removed."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if parts and parts[0].isdigit() and int(parts[0]) != os.getpid() and not pid_alive(int(parts[0])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _KillAfter:
    """File proxy of the test hook: SIGKILL once more than `limit` bytes were written."""

    def __init__(self, f, limit: int):
        self._f, self._limit, self._written = f, limit, 0

    def write(self, data):
        room = self._limit - self._written
        if len(data) > room:
            self._f.write(data[:max(room, 0)])
            self._f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self._written += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None, newline: str | None = None,
                 durable: bool = True) -> Iterator:
    """`with atomic_write(path) as f: f.write(...)`: `path` appears complete or keeps its previous content.

    durable=False skips the fsyncs (bulk image dumps: still never torn after a crash of the process, only a power
    loss could lose the newest files)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode, encoding=encoding or (None if "b" in mode else "utf-8"), newline=newline) as f:
            limit = os.environ.get(KILL_AFTER_BYTES_ENV)
            yield _KillAfter(f, int(limit)) if limit and "b" in mode else f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_directory(path.parent)


def write_bytes(path, data: bytes, durable: bool = True) -> Path:
    with atomic_write(path, "wb", durable=durable) as f:
        f.write(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path, obj, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent) + "\n")
