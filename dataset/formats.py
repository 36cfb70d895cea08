"""What the project's files look like on disk, shared by the writers (`dataset.convert`) and readers.

- RecordIO packs: `open_rec`, `image_keys` (InsightFace header0 aware), `label_to_int` (scalar or array labels);
  byte layout in (docs/formats.md, "RecordIO (`.rec` / `.idx`)").
- Verification `.bin` files: `load_bin` (restricted unpickler) and `write_bin`
  (docs/formats.md, "Verification `.bin` (InsightFace)").
- `encode_image`: the one image-to-bytes rule of every writer (bytes unchanged, arrays as JPEG, BGR).
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.atomic import atomic_write, fsync_directory, remove_stale_temporaries
from dataset import recordio


def encode_image(img, quality: int = 95) -> bytes:
    """Image argument of a writer -> encoded bytes (bytes are stored unchanged, arrays encoded as JPEG, BGR)."""
    if isinstance(img, (bytes, bytearray, memoryview)):
        return bytes(img)
    import cv2

    ok, buf = cv2.imencode(".jpg", np.asarray(img), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV failed to encode an image of shape {np.shape(img)}")
    return buf.tobytes()




def label_to_int(label) -> int:
    """Scalar label or array label ([class_id, aligned_flag]) -> class id."""
    if isinstance(label, np.ndarray):
        if label.size == 0:
            raise ValueError("empty label array")
        return int(label.reshape(-1)[0])
    return int(label)


def image_keys(record: recordio.MXIndexedRecordIO) -> list:
    """Keys of the image records: `range(1, header0.label[0])` when key 0 is an InsightFace header0
    (flag > 0 and empty payload), else every key of the index in file order."""
    if 0 in record.idx:
        header, payload = recordio.unpack(record.read_idx(0))
        if header.flag > 0 and len(payload) == 0:
            end = int(header.label[0])
            keys = [k for k in record.keys if isinstance(k, int) and 1 <= k < end]
            if len(keys) != end - 1:
                raise recordio.RecordIOError(
                    f"{record.uri}: header0 announces images at keys 1..{end - 1} but the index "
                    f"{record.idx_path} holds {len(keys)} of them"
                )
            return keys
    return list(record.keys)


def open_rec(rec_path, idx_path=None) -> recordio.MXIndexedRecordIO:
    """Open `<x>.rec` for random access with its `<x>.idx` (or the given index)."""
    rec_path = Path(rec_path)
    if idx_path is None:
        recover_pair(rec_path)  # an interrupted publication is finished or undone before reading
    idx_path = Path(idx_path) if idx_path is not None else rec_path.with_suffix(".idx")
    return recordio.MXIndexedRecordIO(idx_path, rec_path, "r")



class UnsafeBinError(ValueError):
    """A `.bin` pickle asked for something other than the plain types these files contain."""


def _numpy_dtype(name, align=False, copy=False):
    name = name.decode("latin1") if isinstance(name, bytes) else name
    if np.dtype(name) != np.bool_:
        raise UnsafeBinError(f"refused numpy dtype {name!r}: only bool is expected in a .bin file")
    return np.dtype(name)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype != np.bool_:
        raise UnsafeBinError(f"refused numpy scalar of dtype {dtype!r}: only bool is expected in a .bin file")
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != 1:
        raise UnsafeBinError("malformed numpy bool scalar in .bin file")
    return np.bool_(data != b"\x00")


def _codecs_encode(text, encoding="utf-8"):
    # Python 3 pickles of bytes at protocol < 3 go through _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeBinError("refused _codecs.encode call in .bin file")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("builtins", "bytes"): bytes,
    ("builtins", "bool"): bool,
    ("__builtin__", "bool"): bool,
}


class _BinUnpickler(pickle.Unpickler):
    """Admits only the callables above (each a guarded stand-in); anything else is refused before it runs."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as the image blobs need
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeBinError(
                f"{self._path}: refused to load: the pickle references {module}.{name}, which a verification "
                ".bin file never contains (only tuple/list/bytes/bool are allowed)"
            ) from None

    def persistent_load(self, pid):
        raise UnsafeBinError(f"{self._path}: refused to load: persistent ids are not allowed")


def load_bin(path) -> tuple[list[bytes], list[bool]]:
    """Load an InsightFace verification `.bin` -> (bins: 2N encoded images, issame: N bools), safely."""
    path = str(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = _BinUnpickler(io.BytesIO(data), path).load()
    except UnsafeBinError as e:
        raise UnsafeBinError(str(e) if str(e).startswith(path) else f"{path}: {e}") from None
    except Exception as e:  # truncated / not a pickle
        raise ValueError(f"{path}: not a readable .bin pickle: {type(e).__name__}: {e}") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise ValueError(f"{path}: bins must be a list of encoded image byte strings")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(s, (bool, np.bool_)) for s in issame):
        raise ValueError(f"{path}: issame_list must be a list of booleans")
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected 2 per pair)")
    return [bytes(b) for b in bins], [bool(s) for s in issame]


def write_bin(path, bins: Sequence, issame: Sequence) -> Path:
    """Write a verification `.bin` (images may be BGR arrays or encoded bytes); atomic via rename."""
    blobs = [encode_image(b) for b in bins]
    flags = [bool(s) for s in issame]
    if len(blobs) != 2 * len(flags):
        raise ValueError(f"write_bin: {len(blobs)} images for {len(flags)} pairs (expected 2 per pair)")
    path = Path(path)
    with atomic_write(path) as f:
        pickle.dump((blobs, flags), f, protocol=4)
    return path


# ---------------------------------------------------------------- command line


# ---------------------------------------------------------------- publishing a .rec/.idx pair


def _temporaries(path: Path) -> list[Path]:
    """Writer temporaries of `path` (`.<name>.<pid>.<random>.tmp`, the common.atomic naming)."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def recover_pair(rec_path) -> str | None:
    """Finish or undo a publication of `<x>.rec`/`<x>.idx` that a kill interrupted; returns what was done.

    Publication (see `RecPairWriter`) moves the old `.idx` aside to `.idx.old`, renames the new `.rec`, then the new
    `.idx`, then drops `.idx.old`. So `.idx.old` without `.idx` means it stopped in between: if the new `.rec` was
    not yet renamed, the old pair is put back; if it was, the new `.idx` is put in place.
    """
    rec_path = Path(rec_path)
    idx_path = rec_path.with_suffix(".idx")
    idx_old = idx_path.with_name(idx_path.name + ".old")
    if not idx_old.exists():
        return None
    if idx_path.exists():
        idx_old.unlink()
        return f"{rec_path}: completed an interrupted publication (removed {idx_old.name})"
    new_recs, new_idxs = _temporaries(rec_path), _temporaries(idx_path)
    if new_recs or not new_idxs:
        os.replace(idx_old, idx_path)
        for tmp in new_recs + new_idxs:
            tmp.unlink(missing_ok=True)
        return f"{rec_path}: rolled back an interrupted publication (the previous pair is restored)"
    os.replace(new_idxs[-1], idx_path)
    idx_old.unlink()
    return f"{rec_path}: completed an interrupted publication (new index put in place)"


class RecPairWriter:
    """`with RecPairWriter(dir, name) as writer:` writes `<name>.rec`/`.idx` under temporary names in `dir` and
    publishes them only when complete. The previous pair stays valid until then: a failed or killed writer (full
    disk included) leaves it untouched and removes its temporaries (a killed one's are removed by the next writer).
    The files keep mxnet's format; only their names change during publication (`recover_pair`)."""

    def __init__(self, out_dir, name: str):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.rec_path, self.idx_path = out_dir / f"{name}.rec", out_dir / f"{name}.idx"
        self.writer = None

    def __enter__(self) -> recordio.MXIndexedRecordIO:

        recover_pair(self.rec_path)
        for path in (self.rec_path, self.idx_path):
            remove_stale_temporaries(path)
        tag = f"{os.getpid()}.{os.urandom(4).hex()}.tmp"
        self._tmp_rec = self.rec_path.with_name(f".{self.rec_path.name}.{tag}")
        self._tmp_idx = self.idx_path.with_name(f".{self.idx_path.name}.{tag}")
        self.writer = recordio.MXIndexedRecordIO(self._tmp_idx, self._tmp_rec, "w")
        return self.writer

    def __exit__(self, exc_type, exc, tb):
        try:
            self.writer.close()  # may raise on a full disk: the temporaries still go
            if exc_type is None:
                for tmp in (self._tmp_rec, self._tmp_idx):
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                self._publish()
                return False
        except BaseException:
            self._discard()
            raise
        self._discard()  # the body failed: publish nothing
        return False

    def _discard(self) -> None:
        self._tmp_rec.unlink(missing_ok=True)
        self._tmp_idx.unlink(missing_ok=True)

    def _publish(self) -> None:

        idx_old = self.idx_path.with_name(self.idx_path.name + ".old")
        if self.idx_path.exists():
            os.replace(self.idx_path, idx_old)  # from here a reader sees "no index", never a mismatched pair
        os.replace(self._tmp_rec, self.rec_path)
        os.replace(self._tmp_idx, self.idx_path)
        idx_old.unlink(missing_ok=True)
        fsync_directory(self.rec_path.parent)


# ---------------------------------------------------------------- checking a pack


def check_pack(rec_path, decode: bool = True, limit_problems: int = 20) -> tuple[int, list[str]]:
    """Read every record of `<x>.rec` through its index: framing (magic, lengths), header, and (decode=True) a clean
    image decode. Returns (records checked, problems naming key and offset; at most `limit_problems`)."""
    from dataset.decode import CorruptImageError, decode_checked

    problems: list[str] = []
    checked = 0
    with open_rec(rec_path) as record:
        size = Path(rec_path).stat().st_size
        images = set(image_keys(record))
        for key in record.keys:
            offset = record.idx[key]
            where = f"{rec_path} key {key} (offset {offset})"
            checked += 1
            if offset >= size:
                problems.append(f"{where}: offset past the end of the file ({size} bytes): truncated .rec?")
            else:
                try:
                    header, payload = recordio.unpack(record.read_idx(key))
                    if decode and key in images:
                        decode_checked(payload, where)
                except (recordio.RecordIOError, CorruptImageError, ValueError) as err:
                    problems.append(str(err) if str(where) in str(err) else f"{where}: {err}")
            if len(problems) >= limit_problems:
                break
    return checked, problems
