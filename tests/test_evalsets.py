import numpy as np
import pytest

from dataset.evalsets import PackedSet, PackedSetDataset, write_packed_set


def _faces(n):
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((112, 112, 3), np.uint8)
        img[:, :, i % 3] = 40 + 20 * i  # a dominant channel per image, so colour order is checkable
        img += rng.integers(0, 5, img.shape, dtype=np.uint8)
        yield img, {"name": f"{i:03d}_cam1_{i % 3 + 1}", "label": i // 2, "split": "probe", "distance": i % 3 + 1}


def test_round_trip_keeps_order_meta_and_colours(tmp_path):
    out = write_packed_set(tmp_path / "scface", _faces(6), ["split", "distance"],
                           extra_files={"meta/pairs.txt": "1 2 0\n"})
    packed = PackedSet(out)
    assert len(packed) == 6
    np.testing.assert_array_equal(packed.meta["index"], np.arange(6))
    np.testing.assert_array_equal(packed.meta["label"], [0, 0, 1, 1, 2, 2])
    assert packed.meta["name"][4] == "004_cam1_2" and packed.meta["split"][0] == "probe"
    for i in range(6):
        img = packed.read_image(i)
        assert img.shape == (112, 112, 3) and int(np.argmax(img.mean((0, 1)))) == i % 3
    assert (out / "meta" / "pairs.txt").read_text() == "1 2 0\n"
    swapped = PackedSet(out, swap_rb=True).read_image(0)
    assert int(np.argmax(swapped.mean((0, 1)))) == 2
    tensor, index = PackedSetDataset(out)[3]
    assert tuple(tensor.shape) == (3, 112, 112) and index == 3 and str(tensor.dtype) == "torch.uint8"


def test_interrupted_write_leaves_nothing(tmp_path):
    def broken():
        yield from list(_faces(2))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_packed_set(tmp_path / "tinyface", broken(), ["split", "distance"])
    assert list(tmp_path.iterdir()) == []


def test_a_reader_recovers_the_set_a_killed_writer_moved_aside(tmp_path):
    """Killed between moving the previous set aside and renaming the new one in: the next reader finds the previous
    set (and the dead writer's staging folder is gone)."""
    out = write_packed_set(tmp_path / "scface", _faces(4), ["split", "distance"])
    dead = 2**22 + 1  # above Linux's PID_MAX_LIMIT: never a running process
    out.rename(tmp_path / f".scface.old-{dead}-x")
    (tmp_path / f".scface.tmp-{dead}-y").mkdir()
    assert len(PackedSet(out)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["scface"]


def test_incomplete_set_names_the_missing_file(tmp_path):
    out = write_packed_set(tmp_path / "s", _faces(2), ["split", "distance"])
    (out / "images.idx").unlink()
    with pytest.raises(FileNotFoundError, match="images.idx"):
        PackedSet(out)


def test_row_without_required_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        write_packed_set(tmp_path / "s", [(np.zeros((112, 112, 3), np.uint8), {"name": "a", "label": 0})], ["split"])
