"""common/: the registry idiom, the ordered parallel map and its default worker count, the image-extension rule, and
publishing a directory (every state a killed publisher can leave is recovered; a concurrent publisher is no crash)."""

import os
from pathlib import Path

import pytest

from common import atomic
from common.images import IMAGE_EXTENSIONS, is_image_file
from common.parallel import OrderedPool, default_workers, ordered_map
from common.registry import Registry


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("mode,workers", [("threads", 1), ("threads", 3), ("processes", 2)])
def test_ordered_map_keeps_input_order(mode, workers):
    items = list(range(300))  # several thread windows and process chunks
    assert list(ordered_map(_square, iter(items), workers, mode, chunksize=7)) == [x * x for x in items]


def test_ordered_pool_is_reusable_and_rejects_unknown_modes():
    with OrderedPool(2, "processes", chunksize=4) as pool:
        assert list(pool.map(_square, range(10))) == [x * x for x in range(10)]
        assert list(pool.map(_square, [7])) == [49]
    with pytest.raises(ValueError, match="threads"):
        OrderedPool(2, "fibers")


def test_registry_builds_from_a_node_and_names_what_it_knows():
    reg = Registry("widget")

    @reg.register("square", aliases=("sq",))
    def make(side: int = 1, scale: int = 1):
        return side * side * scale

    assert reg.build_from_node({"name": "sq", "side": 3}, scale=2) == 18
    assert reg.names() == ["square"] and reg.names(include_aliases=True) == ["sq", "square"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("sq")(make)
    with pytest.raises(KeyError, match="unknown widget 'circle'; known widgets: sq, square"):
        reg.build("circle")
    with pytest.raises(KeyError, match="'name'"):
        reg.build_from_node({"side": 2})
    reg.unregister("square")
    assert "sq" not in reg and reg.names() == []


def test_image_extensions_are_case_insensitive(tmp_path):
    for name in ("a.JPG", "b.tiff", "c.webp", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir() if is_image_file(p)) == ["a.JPG", "b.tiff", "c.webp"]
    assert ".png" in IMAGE_EXTENSIONS


# ----------------------------------------------------------------------------------------------- publish_dir

NO_SUCH_PID = 2**22 + 1  # above Linux's PID_MAX_LIMIT: never a running process


def _write_set(directory, content: str):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data.txt").write_text(content)
    return directory


def _leftover(final, kind: str, content: str | None = None):
    """What a publisher with a dead pid left: `kind` 'tmp' (its staging folder) or 'old' (the previous folder it
    moved aside)."""
    path = final.with_name(f".{final.name}.{kind}-{NO_SUCH_PID}-dead")
    return _write_set(path, content) if content is not None else _write_set(path, "partial")


def _siblings(final):
    return sorted(p.name for p in final.parent.iterdir())


def test_publish_dir_replaces_the_previous_directory_and_leaves_nothing_beside_it(tmp_path):
    final = tmp_path / "set"
    for content in ("first", "second"):
        stage = atomic.stage_dir(final)
        assert stage.parent == final.parent and list(stage.iterdir()) == []
        _write_set(stage, content)
        assert atomic.publish_dir(stage, final) == final
        assert (final / "data.txt").read_text() == content
        assert _siblings(final) == ["set"]
    assert final.stat().st_mode & 0o777 == 0o777 & ~_umask()  # what mkdir gives, not mkdtemp's 0o700


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_killed_before_publishing_the_stage_is_removed(tmp_path):
    final = _write_set(tmp_path / "set", "previous")
    stale = _leftover(final, "tmp")
    stage = _write_set(atomic.stage_dir(final), "new")
    assert not stale.exists(), "a dead publisher's staging folder is removed by the next stage_dir"
    atomic.publish_dir(stage, final)
    assert (final / "data.txt").read_text() == "new" and _siblings(final) == ["set"]


def test_killed_after_moving_the_previous_directory_aside_it_comes_back(tmp_path):
    final = tmp_path / "set"
    aside = _leftover(final, "old", "previous")  # final moved aside, the new one never renamed into place
    stale = _leftover(final, "tmp", "complete but unpublished")
    assert atomic.recover_dir(final) == [stale]  # what a reader (or the next writer) runs
    assert (final / "data.txt").read_text() == "previous" and not aside.exists()
    assert _siblings(final) == ["set"]


def test_killed_after_the_rename_the_aside_copy_is_deleted(tmp_path):
    final = _write_set(tmp_path / "set", "new")
    aside = _leftover(final, "old", "previous")
    atomic.publish_dir(_write_set(atomic.stage_dir(final), "newer"), final)
    assert (final / "data.txt").read_text() == "newer" and not aside.exists()
    assert _siblings(final) == ["set"]


def test_leftovers_of_live_publishers_and_other_targets_are_left_alone(tmp_path):
    final = tmp_path / "set"
    live = final.with_name(f".set.old-{os.getppid()}-live")  # the parent process: alive
    _write_set(live, "a live publisher between its two renames")
    other = _write_set(tmp_path / f".set.b.tmp-{NO_SUCH_PID}-dead", "another target's staging folder")
    dead_aside = _leftover(final, "old", "previous")
    atomic.recover_dir(final)
    assert live.exists() and other.exists()
    assert not final.exists() and not dead_aside.exists(), "the gap belongs to the live publisher: nothing restored"


def test_a_concurrent_publisher_that_renamed_first_is_kept(tmp_path, monkeypatch):
    final = _write_set(tmp_path / "set", "previous")
    ours = _write_set(atomic.stage_dir(final), "ours")
    theirs = _write_set(tmp_path / "theirs", "theirs")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == ours:  # the other process's rename lands between our two renames
            real_replace(theirs, final)
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    assert atomic.publish_dir(ours, final) == final
    assert (final / "data.txt").read_text() == "theirs"
    assert _siblings(final) == ["set"], "our stage and the previous directory are gone"


def test_a_failed_rename_puts_the_previous_directory_back(tmp_path, monkeypatch):
    final = _write_set(tmp_path / "set", "previous")
    stage = _write_set(atomic.stage_dir(final), "new")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == stage:
            raise PermissionError("simulated")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(PermissionError):
        atomic.publish_dir(stage, final)
    assert (final / "data.txt").read_text() == "previous"
    with pytest.raises(FileNotFoundError, match="staging directory"):
        atomic.publish_dir(tmp_path / "missing", final)


def test_default_workers_caps_by_the_cores_and_the_callers_limit():
    cores = os.cpu_count() or 1
    assert default_workers(1) == 1
    assert default_workers(10**6) == cores and default_workers(2) == min(2, cores)


def test_staged_dir_publishes_on_success_and_leaves_nothing_on_failure(tmp_path):
    from common.atomic import staged_dir

    final = tmp_path / "set"
    with staged_dir(final) as stage:
        (stage / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError, match="half written"), staged_dir(final) as stage:
        (stage / "a.txt").write_text("two")
        raise RuntimeError("half written")
    assert (final / "a.txt").read_text() == "one", "a failed rewrite keeps the previous directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"], "no staging directory left"
