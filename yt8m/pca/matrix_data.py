"""MediaPipe's `MatrixData` protobuf, read and written by hand (no mediapipe, no generated _pb2).

MediaPipe ships YT8M's PCA as two such files per modality (REFERENCE.md §3-4)::

    message MatrixData {
      optional int32 rows = 1;
      optional int32 cols = 2;
      repeated float packed_data = 3 [packed = true];
      enum Layout { COLUMN_MAJOR = 0; ROW_MAJOR = 1; }
      optional Layout layout = 4 [default = COLUMN_MAJOR];
    }

The message is four fields, so a small wire-format reader is simpler and much faster than a
generic protobuf parser for the 2M floats of the Inception projection: packed float payloads go
straight into `numpy.frombuffer`. Unpacked floats (field 3 as single 32-bit values) are accepted
too, as protobuf parsers must; unknown fields are skipped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from yt8m.core import Yt8mError

FIELD_ROWS = 1
FIELD_COLS = 2
FIELD_DATA = 3
FIELD_LAYOUT = 4
LAYOUT_COLUMN_MAJOR = 0
LAYOUT_ROW_MAJOR = 1
LAYOUT_NAMES = {"column": LAYOUT_COLUMN_MAJOR, "row": LAYOUT_ROW_MAJOR}

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LENGTH_DELIMITED = 2
WIRE_FIXED32 = 5
_MAX_VARINT_BYTES = 10
_FLOAT_LE = np.dtype("<f4")


class _WireError(ValueError):
    """Malformed protobuf bytes; turned into a Yt8mError naming the file by the caller."""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at `pos`; return (unsigned value, next position)."""
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos >= len(data):
            raise _WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
    raise _WireError("varint longer than 10 bytes")


def _to_int32(value: int) -> int:
    """Interpret a decoded varint as protobuf int32 (negatives are sign-extended to 64 bits)."""
    if value >= 1 << 63:
        value -= 1 << 64
    return value


def _write_varint(value: int) -> bytes:
    """Encode a non-negative integer as a base-128 varint."""
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _write_varint((field << 3) | wire_type)


def decode_matrix_data(data: bytes) -> np.ndarray:
    """Parse serialized MatrixData bytes into a float32 [rows, cols] array (raises ValueError)."""
    rows = cols = 0
    layout = LAYOUT_COLUMN_MAJOR
    chunks: list[bytes] = []
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 0x7
        if field == 0:
            raise _WireError("field number 0")
        if wire_type == WIRE_VARINT:
            value, pos = _read_varint(data, pos)
            if field == FIELD_ROWS:
                rows = _to_int32(value)
            elif field == FIELD_COLS:
                cols = _to_int32(value)
            elif field == FIELD_LAYOUT:
                layout = _to_int32(value)
        elif wire_type == WIRE_LENGTH_DELIMITED:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise _WireError("truncated length-delimited field")
            if field == FIELD_DATA:
                if length % 4:
                    raise _WireError("packed float data length is not a multiple of 4")
                chunks.append(data[pos : pos + length])
            pos += length
        elif wire_type == WIRE_FIXED32:
            if pos + 4 > end:
                raise _WireError("truncated 32-bit field")
            if field == FIELD_DATA:
                chunks.append(data[pos : pos + 4])
            pos += 4
        elif wire_type == WIRE_FIXED64:
            if pos + 8 > end:
                raise _WireError("truncated 64-bit field")
            pos += 8
        else:
            raise _WireError(f"unsupported wire type {wire_type} for field {field}")
    if rows < 0 or cols < 0:
        raise _WireError(f"negative shape rows={rows} cols={cols}")
    if layout not in (LAYOUT_COLUMN_MAJOR, LAYOUT_ROW_MAJOR):
        raise _WireError(f"unknown layout {layout}")
    values = np.frombuffer(b"".join(chunks), dtype=_FLOAT_LE)
    if values.size != rows * cols:
        raise _WireError(f"rows={rows} x cols={cols} needs {rows * cols} floats, found {values.size}")
    order = "F" if layout == LAYOUT_COLUMN_MAJOR else "C"
    return values.reshape((rows, cols), order=order).astype(np.float32)


def encode_matrix_data(matrix: np.ndarray, layout: str = "column") -> bytes:
    """Serialize a 2-D array (a 1-D one is a column [n, 1]) as MatrixData with packed floats."""
    if layout not in LAYOUT_NAMES:
        raise ValueError(f"layout must be one of {sorted(LAYOUT_NAMES)}, got {layout!r}")
    array = np.asarray(matrix, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"MatrixData holds a 2-D matrix, got shape {array.shape}")
    rows, cols = array.shape
    order = "F" if layout == "column" else "C"
    payload = array.ravel(order=order).astype(_FLOAT_LE).tobytes()
    parts = [
        _tag(FIELD_ROWS, WIRE_VARINT),
        _write_varint(rows),
        _tag(FIELD_COLS, WIRE_VARINT),
        _write_varint(cols),
        _tag(FIELD_DATA, WIRE_LENGTH_DELIMITED),
        _write_varint(len(payload)),
        payload,
    ]
    if LAYOUT_NAMES[layout] != LAYOUT_COLUMN_MAJOR:  # column-major is the proto default: leave it unset
        parts += [_tag(FIELD_LAYOUT, WIRE_VARINT), _write_varint(LAYOUT_NAMES[layout])]
    return b"".join(parts)


def read_matrix_data(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a MatrixData `.pb` file into float32 [rows, cols]; Yt8mError naming the file if bad."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Yt8mError(f"{path}: cannot read MatrixData file ({exc.strerror or exc})") from None
    try:
        return decode_matrix_data(data)
    except _WireError as exc:
        raise Yt8mError(f"{path}: not a valid MatrixData protobuf ({exc})") from None


def save_matrix_data(path: str | os.PathLike[str], matrix: np.ndarray, layout: str = "column") -> Path:
    """Write `matrix` as a MatrixData `.pb` (column-major like MediaPipe's files by default).

    Written to a temporary name in the same folder, then renamed, so readers never see half a file.
    """
    path = Path(path)
    payload = encode_matrix_data(matrix, layout=layout)
    atomic_write(path, lambda handle: handle.write(payload))
    return path


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(handle)` on a temp file next to `path`, then rename it into place.

    Readers never see half a file; an OS failure becomes a Yt8mError naming `path`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise Yt8mError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise Yt8mError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
