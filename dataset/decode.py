"""Decoding stored images so that a corrupt one is never silent.

OpenCV's libjpeg decodes some corrupt JPEGs anyway and only prints "Corrupt JPEG data: ..." on the process's stderr,
naming nothing. `decode_checked` catches those lines (stderr is redirected to a pipe around the one decode call, and
any other text that lands there meanwhile is passed on) and raises `CorruptImageError` naming the image's source.
"""

from __future__ import annotations

import os
import sys
import threading

import cv2
import numpy as np

_LOCK = threading.Lock()  # fd 2 is process-wide: one redirected decode at a time per process
_MARKERS = ("Corrupt JPEG", "Premature end of JPEG", "Invalid JPEG", "Bogus", "JPEG datastream")


class CorruptImageError(ValueError):
    """A stored image that does not decode cleanly; the message names the file and the record."""


def _decode_capturing_stderr(buffer: np.ndarray) -> tuple[np.ndarray | None, str]:
    with _LOCK:
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        saved = os.dup(2)
        try:
            os.dup2(write_end, 2)
            img = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
    return img, b"".join(chunks).decode(errors="replace")


def decode_checked(payload, source: str) -> np.ndarray:
    """Encoded bytes -> BGR uint8 array; raises CorruptImageError naming `source` when the image does not decode or
    libjpeg reports corrupt data."""
    if not len(payload):
        raise CorruptImageError(f"cannot decode image {source}: empty payload")
    buffer = np.frombuffer(payload, np.uint8)
    is_jpeg = bytes(buffer[:2]) == b"\xff\xd8"
    img, messages = _decode_capturing_stderr(buffer) if is_jpeg else (cv2.imdecode(buffer, cv2.IMREAD_COLOR), "")
    corrupt = [line for line in messages.splitlines() if any(m in line for m in _MARKERS)]
    other = "\n".join(line for line in messages.splitlines() if line not in corrupt)
    if other:
        print(other, file=sys.stderr)  # not ours: hand it back
    if img is None:
        raise CorruptImageError(f"cannot decode image {source} ({len(payload)} bytes)"
                                + (f": {corrupt[0]}" if corrupt else ""))
    if corrupt:
        raise CorruptImageError(f"corrupt image {source} ({len(payload)} bytes): libjpeg says {corrupt[0]!r}")
    return img
