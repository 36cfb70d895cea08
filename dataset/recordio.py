"""RecordIO (.rec/.idx) reader and writer, byte-compatible with mxnet.recordio / dmlc-core.

A drop-in for the names people know from mxnet: IRHeader, pack, unpack, pack_img, unpack_img, MXRecordIO,
MXIndexedRecordIO. Format: (docs/formats.md, "RecordIO (`.rec` / `.idx`)").

Reading uses os.pread on a descriptor opened lazily per process, so an object created before a DataLoader forks
its workers reads correctly in every worker (no shared file offset). Corrupt input raises RecordIOError naming
the file and the key or offset.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import struct
from collections import namedtuple

import numpy as np

__all__ = [
    "IRHeader",
    "MAGIC",
    "MXIndexedRecordIO",
    "MXRecordIO",
    "RecordIOError",
    "RecordIOKeyError",
    "pack",
    "pack_img",
    "unpack",
    "unpack_img",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART_HEADER = struct.Struct("<II")
_LENGTH_MASK = (1 << 29) - 1
MAX_PART_LENGTH = _LENGTH_MASK
_SPAN_CAP = 1 << 24  # largest speculative single read (bytes)

IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)


class RecordIOError(ValueError):
    """Malformed or unreadable RecordIO input (bad magic, truncation, bad index, missing files)."""


class RecordIOKeyError(RecordIOError, KeyError):
    """A key that is not in the .idx file (also a KeyError, as in mxnet)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------- record framing


def _encode_lrec(cflag: int, length: int) -> bytes:
    return _PART_HEADER.pack(MAGIC, (cflag << 29) | length)


def frame_record(buf) -> bytes:
    """Frame one logical record into parts exactly as dmlc-core's RecordIOWriter::WriteRecord does."""
    data = bytes(buf)
    n = len(data)
    if n > MAX_PART_LENGTH:
        raise RecordIOError(f"record of {n} bytes exceeds the RecordIO limit of {MAX_PART_LENGTH} bytes")
    out = []
    start = 0  # first byte of the part being built
    pos = data.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:  # only 4-byte aligned occurrences are split
            out.append(_encode_lrec(1 if start == 0 else 2, pos - start))
            out.append(data[start:pos])
            start = pos + 4
            pos = data.find(_MAGIC_BYTES, start)
        else:
            pos = data.find(_MAGIC_BYTES, pos + 1)
    out.append(_encode_lrec(3 if start != 0 else 0, n - start))
    out.append(data[start:])
    out.append(b"\x00" * (-n % 4))  # padding of the whole record == padding of the last part
    return b"".join(out)


# ---------------------------------------------------------------- image record header


def pack(header, s: bytes) -> bytes:
    """Prefix `s` with an IRHeader; array labels are stored as float32 values before the payload."""
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        header = header._replace(flag=0)
    else:
        label = np.asarray(header.label, dtype=np.float32)
        header = header._replace(flag=label.size, label=0)
        s = label.tobytes() + bytes(s)
    return struct.pack(_IR_FORMAT, *header) + bytes(s)


def unpack(s: bytes):
    """Split a record into (IRHeader, payload); label becomes a float32 array when flag > 0."""
    if len(s) < _IR_SIZE:
        raise RecordIOError(f"record of {len(s)} bytes is shorter than the {_IR_SIZE}-byte IRHeader")
    header = IRHeader(*struct.unpack(_IR_FORMAT, s[:_IR_SIZE]))
    s = s[_IR_SIZE:]
    if header.flag > 0:
        if len(s) < 4 * header.flag:
            raise RecordIOError(
                f"record declares {header.flag} label values but holds only {len(s)} bytes after the header"
            )
        header = header._replace(label=np.frombuffer(s, np.float32, header.flag))
        s = s[header.flag * 4 :]
    return header, s


def pack_img(header, img, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """Encode a BGR uint8 image with OpenCV and pack it with `header`."""
    import cv2

    fmt = img_fmt.upper()
    params = None
    if fmt in (".JPG", ".JPEG"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == ".PNG":
        params = [cv2.IMWRITE_PNG_COMPRESSION, quality]
    ok, buf = cv2.imencode(img_fmt, img, params) if params else cv2.imencode(img_fmt, img)
    if not ok:
        raise RecordIOError(f"OpenCV failed to encode an image as {img_fmt}")
    return pack(header, buf.tobytes())


def unpack_img(s: bytes, iscolor: int = -1):
    """Unpack and decode with OpenCV -> (header, BGR array). Like mxnet, the image is None if decoding fails."""
    import cv2

    header, payload = unpack(s)
    img = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), iscolor) if payload else None
    return header, img


# ---------------------------------------------------------------- sequential file


class MXRecordIO:
    """Sequential RecordIO file. flag 'r' reads, 'w' writes (truncating)."""

    def __init__(self, uri, flag: str):
        if flag not in ("r", "w"):
            raise ValueError(f"flag must be 'r' or 'w', got {flag!r}")
        self.uri = os.fspath(uri)
        self.flag = flag
        self.is_open = False
        self._fd = None  # read mode: raw descriptor used with os.pread
        self._fw = None  # write mode: buffered file
        self._pid = None
        self._pos = 0  # read mode: offset of the next record for read()
        self._size = 0
        self._closed = False  # set by close(); distinguishes 'closed by the user' from 'not yet opened here'
        self.open()

    # -- lifecycle
    def open(self):
        if self.flag == "w":
            self._fw = open(self.uri, "wb")  # noqa: SIM115 - lives as long as the object
        else:
            try:
                self._fd = os.open(self.uri, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError:
                raise RecordIOError(f"{self.uri}: RecordIO file not found") from None
            self._size = os.fstat(self._fd).st_size
            self._pos = 0
        self._pid = os.getpid()
        self.is_open = True
        self._closed = False

    def close(self):
        self._closed = True
        if not self.is_open:
            return
        if self._fw is not None:
            if self._pid == os.getpid():
                self._fw.close()
            self._fw = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.is_open = False
        self._pid = None

    def reset(self):
        """Rewind: the next read() returns the first record (write mode: truncate and start again)."""
        self.close()
        self.open()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __getstate__(self):
        # Picklable for spawn-started workers: the descriptor is reopened on first use.
        if self.flag == "w":
            raise RecordIOError(f"{self.uri}: a RecordIO writer cannot be pickled")
        state = self.__dict__.copy()
        state.update(_fd=None, _pid=None, is_open=False)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _check_pid(self):
        """Reopen after fork (or unpickling) so every process owns its descriptor."""
        if self._pid == os.getpid() and self.is_open:
            return
        if self.flag == "w":
            if self.is_open:
                raise RecordIOError(f"{self.uri}: a RecordIO writer cannot be used from a forked process")
            raise RecordIOError(f"{self.uri}: writer is closed")
        if self._closed:
            raise RecordIOError(f"{self.uri}: reader is closed")
        pos = self._pos
        self._fd = None  # the inherited descriptor stays with the parent
        self.open()
        self._pos = pos

    # -- reading
    def _read_exact(self, offset: int, n: int, what: str, where: str) -> bytes:
        data = os.pread(self._fd, n, offset)
        if len(data) != n:
            raise RecordIOError(
                f"{self.uri}: truncated record {where}: {what} needs {n} bytes at offset {offset}, "
                f"file has {max(0, self._size - offset)}"
            )
        return data

    def _read_record_at(self, offset: int, where: str, span: int = 0):
        """Return (record bytes, offset after it). `where` names the key/offset in error messages.

        `span` (from the index: distance to the next record) lets the common case take a single pread."""
        if offset < 0 or offset >= self._size:
            raise RecordIOError(
                f"{self.uri}: {where}: offset {offset} is past the end of the file ({self._size} bytes)"
            )
        start = offset
        buf = os.pread(self._fd, span, offset) if 8 < span <= _SPAN_CAP else b""

        def fetch(at: int, n: int, what: str) -> bytes:
            rel = at - start
            if rel + n <= len(buf):
                return buf[rel : rel + n]
            return self._read_exact(at, n, what, where)

        chunks = []
        first = True
        while True:
            magic, lrec = _PART_HEADER.unpack(fetch(offset, 8, "part header"))
            if magic != MAGIC:
                raise RecordIOError(f"{self.uri}: bad magic 0x{magic:08x} at offset {offset} ({where})")
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            if cflag > 3 or (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
                raise RecordIOError(f"{self.uri}: invalid continuation flag {cflag} at offset {offset} ({where})")
            padded = (length + 3) & ~3
            if offset + 8 + padded > self._size:
                raise RecordIOError(
                    f"{self.uri}: truncated record {where}: part at offset {offset} declares {length} bytes, "
                    f"file ends after {self._size - offset - 8}"
                )
            if length:
                chunks.append(fetch(offset + 8, length, "record data"))
            offset += 8 + padded
            if cflag in (0, 3):
                break
            chunks.append(_MAGIC_BYTES)  # the writer dropped it at the split
            first = False
        return b"".join(chunks), offset

    def read(self):
        """Next record as bytes, or None at end of file."""
        self._require("r")
        self._check_pid()
        if self._pos >= self._size:
            return None
        rec, self._pos = self._read_record_at(self._pos, f"record at offset {self._pos}")
        return rec

    def read_at(self, offset: int, where: str | None = None, span: int = 0) -> bytes:
        """Random access: the record starting at byte `offset` (does not move the read() position)."""
        self._require("r")
        self._check_pid()
        return self._read_record_at(offset, where or f"record at offset {offset}", span)[0]

    def read_head(self, offset: int, n: int, where: str | None = None) -> bytes:
        """The first (up to) `n` bytes of the record at `offset`, with one small read in the common case."""
        self._require("r")
        self._check_pid()
        where = where or f"record at offset {offset}"
        if offset < 0 or offset + 8 > self._size:
            return self._read_record_at(offset, where)[0][:n]  # raises the precise error
        magic, lrec = _PART_HEADER.unpack(self._read_exact(offset, 8, "part header", where))
        cflag, length = lrec >> 29, lrec & _LENGTH_MASK
        if magic != MAGIC or cflag not in (0, 1) or length < n or offset + 8 + length > self._size:
            return self._read_record_at(offset, where)[0][:n]  # split, short or corrupt: take the careful path
        return self._read_exact(offset + 8, n, "record data", where)

    def read_header_at(self, offset: int, where: str | None = None):
        """IRHeader of the record at `offset` (label array included) without reading the payload."""
        head = self.read_head(offset, _IR_SIZE + 8, where)
        flag = struct.unpack_from("<I", head)[0] if len(head) >= 4 else 0
        if flag > 2:
            head = self.read_head(offset, _IR_SIZE + 4 * flag, where)
        try:
            return unpack(head)[0]
        except RecordIOError as e:
            raise RecordIOError(f"{self.uri}: {where or f'record at offset {offset}'}: {e}") from None

    # -- writing
    def write(self, buf):
        self._require("w")
        if self._pid != os.getpid():
            raise RecordIOError(f"{self.uri}: a RecordIO writer cannot be used from a forked process")
        self._fw.write(frame_record(buf))

    def tell(self) -> int:
        if self.flag == "w":
            self._require("w")
            return self._fw.tell()
        return self._pos

    def _require(self, flag: str):
        if self.flag != flag:
            raise RecordIOError(f"{self.uri}: opened with flag {self.flag!r}, operation needs {flag!r}")
        if self._closed:
            raise RecordIOError(f"{self.uri}: file is closed")


# ---------------------------------------------------------------- indexed file


def _read_index(idx_path: str, key_type):
    idx, keys = {}, []
    try:
        with open(idx_path) as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise RecordIOError(f"{idx_path}:{lineno}: expected 'key<TAB>offset', got {line.rstrip()!r}")
                try:
                    key, offset = key_type(fields[0]), int(fields[1])
                except ValueError:
                    raise RecordIOError(f"{idx_path}:{lineno}: cannot parse {line.rstrip()!r}") from None
                if offset < 0:
                    raise RecordIOError(f"{idx_path}:{lineno}: negative offset {offset}")
                if key not in idx:
                    keys.append(key)
                idx[key] = offset
    except FileNotFoundError:
        raise RecordIOError(f"{idx_path}: index file (.idx) not found") from None
    return idx, keys


class MXIndexedRecordIO(MXRecordIO):
    """RecordIO file with a `key\\toffset` text index for random access."""

    def __init__(self, idx_path, uri, flag: str, key_type=int):
        self.idx_path = os.fspath(idx_path)
        self.key_type = key_type
        self.idx = {}
        self.keys = []
        self._fidx = None
        self._ends = None  # sorted record offsets, built on first read_idx
        super().__init__(uri, flag)

    def open(self):
        if self.flag == "r" and not self.idx:
            # The index is read once; forked workers reuse the parent's copy.
            self.idx, self.keys = _read_index(self.idx_path, self.key_type)
        super().open()
        if self.flag == "w":
            self.idx, self.keys = {}, []
            self._fidx = open(self.idx_path, "w")  # noqa: SIM115 - lives as long as the object

    def close(self):
        if self._fidx is not None:
            if self._pid == os.getpid():
                self._fidx.close()
            self._fidx = None
        super().close()

    def __len__(self) -> int:
        return len(self.keys)

    def _offset(self, key) -> int:
        try:
            return self.idx[key]
        except KeyError:
            raise RecordIOKeyError(f"{self.uri}: key {key!r} is not in the index {self.idx_path}") from None

    def seek(self, idx):
        """Position read() at record `idx`."""
        self._require("r")
        self._check_pid()
        self._pos = self._offset(idx)

    def _span(self, offset: int) -> int:
        """Bytes from `offset` to the next indexed record (or the end of file): one read covers the record."""
        if self._ends is None:
            self._ends = np.unique(np.fromiter(self.idx.values(), dtype=np.int64, count=len(self.idx)))
        i = int(np.searchsorted(self._ends, offset, side="right"))
        end = int(self._ends[i]) if i < len(self._ends) else self._size
        return end - offset

    def read_idx(self, idx) -> bytes:
        """The record stored under key `idx`."""
        offset = self._offset(idx)
        self._check_pid()  # _span needs the file size
        return self.read_at(offset, f"key {idx!r}", self._span(offset))

    def read_header_idx(self, idx):
        """IRHeader of the record under key `idx` without reading its payload."""
        return self.read_header_at(self._offset(idx), f"key {idx!r}")

    def write_idx(self, idx, buf):
        key = self.key_type(idx)
        pos = self.tell()
        self.write(buf)
        self._fidx.write(f"{key}\t{pos}\n")
        self.idx[key] = pos
        self.keys.append(key)
