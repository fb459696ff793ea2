"""Crash-safe checkpoints.

File layout: an 8-byte magic ``EUCLCKPT``, the payload length (8 bytes, little endian), the payload's
SHA-256 (32 bytes), then the payload (``torch.save`` of a dict of tensors / plain containers, loaded with
``weights_only=True``). :func:`save_checkpoint` writes a temporary file in the same directory, fsyncs it
and ``os.replace`` s it over the target, so a crash mid-write leaves the previous checkpoint intact;
:func:`load_checkpoint` detects truncated or corrupted files with :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "MAGIC"]

MAGIC = b"EUCLCKPT"
_HEADER = struct.Struct("<8sQ32s")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or not a euclidnet checkpoint."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Atomically write ``payload`` to ``path`` (temp file + fsync + os.replace + directory fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    header = _HEADER.pack(MAGIC, len(data), hashlib.sha256(data).digest())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    raw = path.read_bytes()
    if len(raw) < _HEADER.size:
        raise CheckpointError(f"{path}: truncated checkpoint ({len(raw)} bytes, shorter than the header)")
    magic, length, digest = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a euclidnet checkpoint (bad magic {magic!r})")
    data = raw[_HEADER.size :]
    if len(data) != length:
        raise CheckpointError(
            f"{path}: truncated or damaged checkpoint: header says {length} payload bytes, file has {len(data)}"
        )
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(f"{path}: corrupted checkpoint: SHA-256 of the payload does not match its header")
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - wrapped with the file name
        raise CheckpointError(f"{path}: cannot unpickle checkpoint payload: {exc}") from exc
