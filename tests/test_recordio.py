"""dataset.recordio: byte format (checked by an independent parser written from the spec), round trips,
multi-part records, corrupt input and forked DataLoader workers."""

import multiprocessing
import pickle
import struct

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dataset import recordio
from dataset.recordio import IRHeader, MXIndexedRecordIO, MXRecordIO, RecordIOError

MAGIC = b"\x0a\x23\xd7\xce"  # 0xced7230a little-endian, as the spec writes it on disk


# ---------------------------------------------------------------- independent reference parser
# (docs/formats.md, "Framing")


def spec_parse(rec_bytes: bytes):
    """Parse a .rec byte string -> list of (offset, record bytes, [part cflags]); asserts every framing rule."""
    out, pos = [], 0
    while pos < len(rec_bytes):
        start, parts, flags = pos, [], []
        while True:
            assert rec_bytes[pos : pos + 4] == MAGIC
            (lrec,) = struct.unpack("<I", rec_bytes[pos + 4 : pos + 8])
            cflag, length = lrec >> 29, lrec & (2**29 - 1)
            flags.append(cflag)
            parts.append(rec_bytes[pos + 8 : pos + 8 + length])
            pad = (4 - length % 4) % 4
            assert rec_bytes[pos + 8 + length : pos + 8 + length + pad] == b"\0" * pad
            pos += 8 + length + pad
            if cflag in (0, 3):
                break
        out.append((start, MAGIC.join(parts), flags))
    return out


def spec_header(record: bytes):
    flag, label, id1, id2 = struct.unpack("<IfQQ", record[:24])
    if flag > 0:
        return flag, list(struct.unpack(f"<{flag}f", record[24 : 24 + 4 * flag])), id1, id2, record[24 + 4 * flag :]
    return flag, label, id1, id2, record[24:]


PAYLOADS = [
    b"",  # empty payload
    b"abc",  # needs padding
    b"abcd",  # no padding
    MAGIC,  # magic only: two empty parts
    b"wxyz" + MAGIC + b"12",  # aligned magic in the middle: split
    b"x" + MAGIC + b"yyy",  # unaligned magic: not split
    MAGIC + b"abcd" + MAGIC + MAGIC + b"z",  # leading, repeated and consecutive magics: 4 parts
    b"abcd" + MAGIC,  # magic at the very end
    bytes(range(256)) * 5,
]


def write_pairs(tmp_path, payloads, keys=None):
    keys = list(range(len(payloads))) if keys is None else keys
    idx, rec = tmp_path / "a.idx", tmp_path / "a.rec"
    with MXIndexedRecordIO(idx, rec, "w") as w:
        for k, p in zip(keys, payloads):
            w.write_idx(k, p)
    return idx, rec


def test_writer_output_matches_spec_parser_and_split_rules(tmp_path):
    keys = [5, 0, 17, 3, 2, 9, 11, 8, 1]  # keys need not be sorted
    idx, rec = write_pairs(tmp_path, PAYLOADS, keys)
    parsed = spec_parse(rec.read_bytes())
    assert [p[1] for p in parsed] == PAYLOADS
    assert [p[2] for p in parsed] == [[0], [0], [0], [1, 3], [1, 3], [0], [1, 2, 2, 3], [1, 3], [0]]
    lines = idx.read_text().splitlines()
    assert lines == [f"{k}\t{p[0]}" for k, p in zip(keys, parsed)]


def test_exact_bytes_of_a_split_record(tmp_path):
    with MXRecordIO(tmp_path / "x.rec", "w") as w:
        w.write(b"ab" + b"cd" + MAGIC + b"e")
    first = MAGIC + struct.pack("<I", (1 << 29) | 4) + b"abcd"  # cflag 1, the 4 bytes before the magic
    last = MAGIC + struct.pack("<I", (3 << 29) | 1) + b"e\0\0\0"  # cflag 3, the rest, zero padding
    expected = first + last
    assert (tmp_path / "x.rec").read_bytes() == expected


def test_sequential_and_indexed_round_trip(tmp_path):
    keys = [5, 0, 17, 3, 2, 9, 11, 8, 1]
    idx, rec = write_pairs(tmp_path, PAYLOADS, keys)
    with MXRecordIO(rec, "r") as r:
        got = []
        while (x := r.read()) is not None:
            got.append(x)
        assert got == PAYLOADS
        r.reset()
        assert r.tell() == 0 and r.read() == PAYLOADS[0]
    with MXIndexedRecordIO(idx, rec, "r") as r:
        assert r.keys == keys
        for k, p in zip(reversed(keys), reversed(PAYLOADS)):
            assert r.read_idx(k) == p
        r.seek(17)
        assert r.read() == PAYLOADS[2] and r.read() == PAYLOADS[3]
    # An index listing only some records (so the gap to the next indexed offset spans several records).
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines[i] for i in (6, 1, 3)) + "\n")
    with MXIndexedRecordIO(idx, rec, "r") as r:
        assert [r.read_idx(k) for k in (11, 0, 3)] == [PAYLOADS[6], PAYLOADS[1], PAYLOADS[3]]


def test_header_pack_unpack_scalar_array_and_empty(tmp_path):
    scalar = recordio.pack(IRHeader(7, 3.0, 11, 12), b"img")  # caller's flag is ignored for scalars
    assert spec_header(scalar) == (0, 3.0, 11, 12, b"img")
    array = recordio.pack(IRHeader(0, [4, 1], 2, 0), b"img")
    assert spec_header(array) == (2, [4.0, 1.0], 2, 0, b"img")
    header0 = recordio.pack(IRHeader(0, np.array([10.0, 13.0]), 0, 0), b"")
    assert spec_header(header0) == (2, [10.0, 13.0], 0, 0, b"")

    h, s = recordio.unpack(array)
    assert h.flag == 2 and h.label.dtype == np.float32 and h.label.tolist() == [4.0, 1.0] and s == b"img"
    h, s = recordio.unpack(scalar)
    assert h == IRHeader(0, 3.0, 11, 12) and s == b"img"
    h, s = recordio.unpack(header0)
    assert h.label.tolist() == [10.0, 13.0] and s == b""
    with pytest.raises(RecordIOError, match="shorter"):
        recordio.unpack(b"\0" * 10)
    with pytest.raises(RecordIOError, match="label values"):
        recordio.unpack(struct.pack("<IfQQ", 3, 0, 0, 0) + b"\0" * 4)

    # Header bytes that contain the magic at an aligned offset survive the split.
    tricky = recordio.pack(IRHeader(0, [struct.unpack("<f", MAGIC)[0]], 0, 0), MAGIC * 3)
    idx, rec = write_pairs(tmp_path, [tricky])
    with MXIndexedRecordIO(idx, rec, "r") as r:
        assert r.read_idx(0) == tricky
        assert r.read_header_idx(0).flag == 1


def test_pack_img_unpack_img_keeps_bgr():
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0] = 200  # blue in BGR
    h, out = recordio.unpack_img(recordio.pack_img(IRHeader(0, 1, 0, 0), img, img_fmt=".png"))
    assert h.label == 1.0 and np.array_equal(out, img)
    _, out = recordio.unpack_img(recordio.pack_img(IRHeader(0, 1, 0, 0), img, quality=90))
    assert np.abs(out.astype(int) - img).max() <= 3
    _, bad = recordio.unpack_img(recordio.pack(IRHeader(0, 1, 0, 0), b"not an image"))
    assert bad is None  # mxnet behaviour; the datasets turn this into a named error
    _, gray = recordio.unpack_img(recordio.pack_img(IRHeader(0, 1, 0, 0), img, img_fmt=".png"), iscolor=0)
    assert gray.ndim == 2


# ---------------------------------------------------------------- corrupt input


@pytest.fixture
def pair(tmp_path):
    return write_pairs(tmp_path, [b"first", b"second" * 10, b"third"])


def test_bad_magic_names_file_and_key(pair):
    idx, rec = pair
    data = bytearray(rec.read_bytes())
    off = int(idx.read_text().splitlines()[1].split()[1])
    data[off] ^= 0xFF
    rec.write_bytes(bytes(data))
    with MXIndexedRecordIO(idx, rec, "r") as r, pytest.raises(RecordIOError, match=r"a\.rec.*bad magic.*key 1"):
        r.read_idx(1)
    with MXRecordIO(rec, "r") as r:
        assert r.read() == b"first"
        with pytest.raises(RecordIOError, match=f"bad magic.*offset {off}"):
            r.read()


def test_truncated_record(pair):
    idx, rec = pair
    data = rec.read_bytes()
    rec.write_bytes(data[:-6])
    with MXIndexedRecordIO(idx, rec, "r") as r:
        assert r.read_idx(1) == b"second" * 10
        with pytest.raises(RecordIOError, match=r"a\.rec.*truncated.*key 2"):
            r.read_idx(2)
    rec.write_bytes(data[: len(data) - 14])  # only part of the 8-byte part header of the last record is left
    with MXIndexedRecordIO(idx, rec, "r") as r, pytest.raises(RecordIOError, match="truncated.*key 2"):
        r.read_idx(2)


def test_idx_offset_past_end(pair):
    idx, rec = pair
    idx.write_text(idx.read_text() + "7\t999999\n")
    with MXIndexedRecordIO(idx, rec, "r") as r, pytest.raises(RecordIOError, match=r"a\.rec.*key 7.*999999.*past"):
        r.read_idx(7)


def test_idx_offset_into_the_middle_of_a_record(tmp_path):
    idx, rec = write_pairs(tmp_path, [b"abcd" + MAGIC + b"efgh"])
    idx.write_text("0\t0\n1\t12\n")  # offset 12 is the second part of record 0
    with MXIndexedRecordIO(idx, rec, "r") as r, pytest.raises(RecordIOError, match="continuation flag 3.*key 1"):
        r.read_idx(1)


def test_missing_files_and_unknown_key(pair, tmp_path):
    idx, rec = pair
    with pytest.raises(RecordIOError, match=r"missing\.idx.*not found"):
        MXIndexedRecordIO(tmp_path / "missing.idx", rec, "r")
    with pytest.raises(RecordIOError, match=r"nope\.rec.*not found"):
        MXRecordIO(tmp_path / "nope.rec", "r")
    with MXIndexedRecordIO(idx, rec, "r") as r:
        with pytest.raises(KeyError, match=r"key 42 is not in the index .*a\.idx"):
            r.read_idx(42)
        with pytest.raises(RecordIOError):
            r.read_idx(42)
    idx.write_text("0\t0\nbroken line here\n")
    with pytest.raises(RecordIOError, match=r"a\.idx:2"):
        MXIndexedRecordIO(idx, rec, "r")


def test_wrong_mode_and_closed(pair):
    idx, rec = pair
    r = MXIndexedRecordIO(idx, rec, "r")
    with pytest.raises(RecordIOError, match="flag 'r'"):
        r.write(b"x")
    r.close()
    with pytest.raises(RecordIOError, match="closed"):
        r.read_idx(0)


# ---------------------------------------------------------------- processes


class _RecordDataset(Dataset):
    def __init__(self, record):
        self.record = record

    def __len__(self):
        return len(self.record.keys)

    def __getitem__(self, i):
        key = self.record.keys[i]
        return key, torch.frombuffer(bytearray(self.record.read_idx(key)), dtype=torch.uint8)


def test_forked_dataloader_workers_read_the_right_records(tmp_path):
    rng = np.random.default_rng(0)
    payloads = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() + MAGIC * (i % 3) for i, n in
                enumerate(rng.integers(1, 300, 64))]
    idx, rec = write_pairs(tmp_path, payloads)
    record = MXIndexedRecordIO(idx, rec, "r")
    record.read_idx(3)  # opened in the parent before the fork
    loader = DataLoader(_RecordDataset(record), batch_size=None, shuffle=True, num_workers=2,
                        multiprocessing_context=multiprocessing.get_context("fork"),
                        generator=torch.Generator().manual_seed(0))
    seen = {}
    for key, data in loader:
        seen[int(key)] = bytes(data.numpy())
    assert seen == dict(enumerate(payloads))
    assert record.read_idx(5) == payloads[5]  # the parent's reader still works
    record.close()


def _read_in_child(reader: MXIndexedRecordIO, key: int) -> tuple[bytes, list]:
    return reader.read_idx(key), list(reader.keys)


def test_reader_travels_to_spawned_workers(pair):
    """A reader handed to a spawn-started process (pickled there and back by multiprocessing) reads by key."""
    idx, rec = pair
    with MXIndexedRecordIO(idx, rec, "r") as r, multiprocessing.get_context("spawn").Pool(1) as pool:
        data, keys = pool.apply(_read_in_child, (r, 2))
    assert data == b"third" and keys == [0, 1, 2]
    with MXIndexedRecordIO(idx, rec, "w") as w, pytest.raises(RecordIOError, match="cannot be pickled"):
        pickle.dumps(w)


def test_cv2_decodes_what_pack_img_stored(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    idx, rec = write_pairs(tmp_path, [recordio.pack_img(IRHeader(0, [3, 1], 1, 0), img, img_fmt=".png")])
    flag, label, _, _, payload = spec_header(spec_parse(rec.read_bytes())[0][1])
    assert (flag, label) == (2, [3.0, 1.0])
    assert np.array_equal(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR), img)
