"""W&B's offline run file (`run-<id>.wandb`): read its records, and name their entity.

The format (wandb 0.19 to 0.31): a 7-byte header (``:W&B``, uint16 LE magic 0xBEE1,
uint8 version 0), then leveldb-log chunks in 32 KiB blocks: uint32 LE CRC, uint16 LE
length, uint8 type (1 full, 2 first, 3 middle, 4 last), data; fewer than 7 bytes left in
a block is padding. Each reassembled payload is one ``wandb_internal_pb2.Record``.
wandb's own reader was removed in 0.30, hence this one.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _crc(ctype: int, chunk: bytes) -> int:
    return zlib.crc32(chunk, zlib.crc32(bytes([ctype]))) & 0xFFFFFFFF


def payloads(data: bytes) -> Iterator[bytes]:
    """The records' bytes, checked against their CRCs."""
    if data[: len(HEADER)] != HEADER:
        raise ValueError(f"not a .wandb file: header {data[:7]!r}")
    pos, pending = len(HEADER), b""
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:
            pos += left
            continue
        crc, length, ctype = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if length == 0 and ctype == 0:  # zero padding at the end of a block
            pos += left
            continue
        if _crc(ctype, chunk) != crc:
            raise ValueError(f"CRC mismatch at byte {pos}")
        pos += CHUNK_HEADER + length
        if ctype == FULL:
            yield chunk
        elif ctype == FIRST:
            pending = chunk
        elif ctype == MIDDLE:
            pending += chunk
        elif ctype == LAST:
            yield pending + chunk
            pending = b""
        else:
            raise ValueError(f"unknown chunk type {ctype} at byte {pos}")


def encode(records: Iterable[bytes]) -> bytes:
    """A `.wandb` file holding these payloads, in the format `payloads` reads."""
    out = bytearray(HEADER)
    for payload in records:
        first, rest = True, payload
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < CHUNK_HEADER:
                out += bytes(left)
                continue
            chunk, rest = rest[: left - CHUNK_HEADER], rest[left - CHUNK_HEADER :]
            ctype = (FULL if not rest else FIRST) if first else (LAST if not rest else MIDDLE)
            out += struct.pack("<IHB", _crc(ctype, chunk), len(chunk), ctype) + chunk
            first = False
            if not rest:
                break
    return bytes(out)


def run_file(folder: Path) -> Path:
    """The `run-<id>.wandb` file of an offline run folder."""
    found = sorted(folder.glob("run-*.wandb"))
    if len(found) != 1:
        raise FileNotFoundError(f"no single run-*.wandb file in {folder}")
    return found[0]


def _pb(module: Any) -> Any:
    return module  # protobuf's generated modules have no types for mypy


def entities(path: Path) -> set[str]:
    """The entities the run record and the artifact records name ("" when none)."""
    from wandb.proto import wandb_internal_pb2

    found = set()
    for payload in payloads(path.read_bytes()):
        record = _pb(wandb_internal_pb2).Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind in ("run", "artifact"):
            found.add(getattr(record, kind).entity)
    return found


def name_entity(path: Path, entity: str) -> bool:
    """Fill ``entity`` into the run and artifact records that name none; whether any did.

    An offline run started without an entity records `""`, and `wandb sync` would send
    that on every artifact call (the run itself gets the server's default): filled in,
    the run and its artifacts go to the same entity. Written aside, then renamed.
    """
    from wandb.proto import wandb_internal_pb2

    changed, out = False, []
    for payload in payloads(path.read_bytes()):
        record = _pb(wandb_internal_pb2).Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind in ("run", "artifact") and not getattr(record, kind).entity:
            getattr(record, kind).entity = entity
            changed = True
            payload = record.SerializeToString()
        out.append(payload)
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(encode(out))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    return changed
