"""The one write path of the project: temporary file in the target's directory, flush + fsync, rename.

A reader sees the previous complete file or the new complete file, never a torn one: the temporary file lives in the
same directory (a rename across filesystems would be a copy), and a failed writer (exception, full disk) removes it.
A killed writer cannot clean up; its temporary file carries its process id, and the next write of the same target
removes temporaries whose process is gone, so litter never accumulates.

Directories are published the same way (`stage_dir`, then `publish_dir`): a complete staging directory replaces the
target by rename, with the previous one moved aside until the new one is in place; `recover_dir` undoes what a killed
publisher left.

Test hook: with `FACE_TEST_KILL_WRITER_AFTER_BYTES=N` in the environment a writer kills its own process with SIGKILL
after writing N bytes (the chaos test uses it to kill a run in the middle of a checkpoint write).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

KILL_AFTER_BYTES_ENV = "FACE_TEST_KILL_WRITER_AFTER_BYTES"


def _umask() -> int:
    """The process umask (read by setting it, so read once): `open()` and `mkdir` honour it, mkstemp and mkdtemp
    give 0o600 / 0o700 whatever it is."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _umask()
_FILE_MODE = 0o666 & ~_UMASK
_DIR_MODE = 0o777 & ~_UMASK


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


# ----------------------------------------------------------------------------------------------- directories
# Leftovers of a directory publication carry the writer's pid, like the file temporaries above:
# `.<name>.tmp-<pid>-<random>` (the staging directory) and `.<name>.old-<pid>-<random>` (the previous directory,
# moved aside while the new one is renamed into place).


def _leftovers(final: Path) -> list[tuple[Path, str, int]]:
    """(path, kind, pid) of every staging or aside directory of `final`, any process."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)-\w+$")
    found = []
    if final.parent.is_dir():
        for entry in final.parent.iterdir():
            match = pattern.match(entry.name)
            if match:
                found.append((entry, match.group(1), int(match.group(2))))
    return found


def recover_dir(final) -> list[Path]:
    """Undo what publishers of `final` that no longer run (same host) left; returns what was removed.

    A publisher killed between moving the previous directory aside and renaming the new one into place leaves no
    `final`: the newest aside directory comes back. Staging directories and the other aside directories go."""
    final = Path(final)
    dead, live_aside = [], False
    for path, kind, pid in _leftovers(final):
        if pid != os.getpid() and not pid_alive(pid):
            dead.append((path, kind))
        else:
            live_aside |= kind == "old"
    aside = sorted((path for path, kind in dead if kind == "old"), key=lambda p: p.stat().st_mtime_ns)
    if aside and not final.exists() and not live_aside:  # a live publisher between its two renames owns the gap
        with contextlib.suppress(OSError):  # a concurrent recovery may have restored it first
            os.replace(aside.pop(), final)
    removed = []
    for path, _kind in dead:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def stage_dir(final) -> Path:
    """A fresh empty staging directory beside `final` for `publish_dir` (same filesystem, so the rename is atomic);
    leftovers of dead publishers of `final` are recovered first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    os.chmod(stage, _DIR_MODE)
    return stage


@contextlib.contextmanager
def staged_dir(final) -> Iterator[Path]:
    """`with staged_dir(final) as stage:` write the new directory into `stage`; when the block ends it is published
    as `final` (`publish_dir`), and when the block (or the publish) raises, `stage` is removed."""
    stage = stage_dir(final)
    try:
        yield stage
        publish_dir(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def publish_dir(stage, final) -> Path:
    """Publish the fully written directory `stage` (from `stage_dir`) as `final`: a reader sees the previous
    complete directory or the new one, never a mix.

    Sequence: move the previous `final` aside, rename `stage` into place, delete the aside copy; a kill at any point
    leaves leftovers that `recover_dir` (run by the next `stage_dir` of the same target) resolves. When a concurrent
    publisher of the same `final` renames its directory into place first, theirs is kept and `stage` is deleted."""
    stage, final = Path(stage), Path(final)
    if not stage.is_dir():
        raise FileNotFoundError(f"publish_dir: staging directory {stage} does not exist")
    recover_dir(final)
    aside = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    with contextlib.suppress(FileNotFoundError):  # no previous directory (or a concurrent publisher moved it)
        os.replace(final, aside)
    try:
        os.replace(stage, final)
    except OSError:
        if not final.is_dir():  # not a race: put the previous directory back and report
            if aside.exists():
                os.replace(aside, final)
            raise
        shutil.rmtree(stage, ignore_errors=True)  # another publisher's complete directory took the place
    fsync_directory(final.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return final
