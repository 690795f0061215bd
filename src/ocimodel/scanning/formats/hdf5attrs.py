"""A minimal reader of an HDF5 file's root-group attributes, in pure Python: enough to get
a Keras ``model_config`` without handing a hostile file to the HDF5 C library, and
without reading the datasets (on a registry: the superblock, the root object header and
the global heap block that holds the string).

Covers what h5py writes by default and with ``libver="latest"``: superblock versions 0 to
3, object headers version 1 and 2 (with continuation blocks), attribute messages 1 to 3,
fixed-length strings and variable-length strings in the global heap. Attributes kept in
dense storage (a fractal heap, used past 8 attributes with ``libver="latest"``) are not
read: :class:`Unsupported` says so and the caller falls back on h5py or an info finding.
Specification: the HDF5 File Format Specification, version 3."""

from __future__ import annotations

from ocimodel.scanning.formats.randomaccess import ChunkReader

__all__ = ["MAGIC", "Unsupported", "root_attributes"]

MAGIC = b"\x89HDF\r\n\x1a\n"
_MAX_MESSAGES = 10_000
_MAX_BLOCKS = 64  # continuation blocks followed at most
_MAX_STRING = 64 << 20


class Unsupported(Exception):
    """The file uses a part of HDF5 this reader does not (or is malformed)."""


class _File:
    def __init__(self, reader: ChunkReader, base: int, offsets: int, lengths: int) -> None:
        self.reader, self.base, self.offsets, self.lengths = reader, base, offsets, lengths

    def read(self, address: int, length: int) -> bytes:
        data = self.reader.read(self.base + address, length)
        if len(data) < length:
            raise Unsupported(f"{length} bytes at {address} run past the end of the file")
        return data

    def uint(self, data: bytes, at: int, size: int) -> int:
        return int.from_bytes(data[at : at + size], "little")


def _superblock(reader: ChunkReader) -> tuple[_File, int]:
    for at in (0, 512, 1024, 2048, 4096):
        head = reader.read(at, 128)
        if head[:8] == MAGIC:
            break
    else:
        raise Unsupported("no HDF5 superblock")
    version = head[8]
    if version in (0, 1):
        offsets, lengths = head[13], head[14]
        fields_at = 24 if version == 0 else 28
        base = int.from_bytes(head[fields_at : fields_at + offsets], "little")
        entry = fields_at + 4 * offsets  # base, free space, EOF, driver info; then the root entry
        root = int.from_bytes(head[entry + offsets : entry + 2 * offsets], "little")
    elif version in (2, 3):
        offsets, lengths = head[9], head[10]
        base = int.from_bytes(head[12 : 12 + offsets], "little")
        root = int.from_bytes(head[12 + 3 * offsets : 12 + 4 * offsets], "little")
    else:
        raise Unsupported(f"superblock version {version}")
    if offsets not in (2, 4, 8) or lengths not in (2, 4, 8):
        raise Unsupported("unusual offset or length sizes")
    return _File(reader, base if version >= 2 else at, offsets, lengths), root


def _messages(f: _File, address: int):
    """(type, data) of every message of the object header at ``address``."""
    blocks: list[tuple[int, int, int]] = []  # (address, length, header version)
    head = f.read(address, 16)
    if head[:4] == b"OHDR":
        flags = head[5]
        pos = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        size_len = 1 << (flags & 3)
        chunk = f.uint(f.read(address + pos, size_len), 0, size_len)
        blocks.append((address + pos + size_len, chunk, 2))
        order = 2 if flags & 0x04 else 0
    elif head[0] == 1:
        blocks.append((address + 16, f.uint(head, 8, 4), 1))
        order = 0
    else:
        raise Unsupported(f"object header version {head[0]}")
    count = 0
    while blocks:
        start, length, version = blocks.pop(0)
        if length > _MAX_STRING:
            raise Unsupported("object header block too large")
        data = f.read(start, length)
        pos = 0
        prefix = 8 if version == 1 else 4 + order
        end = length - (4 if version == 2 else 0)  # v2 blocks end with a checksum
        while pos + prefix <= end:
            if version == 1:
                mtype, size = f.uint(data, pos, 2), f.uint(data, pos + 2, 2)
            else:
                mtype, size = data[pos], f.uint(data, pos + 1, 2)
            body = data[pos + prefix : pos + prefix + size]
            pos += prefix + size
            count += 1
            if count > _MAX_MESSAGES or len(blocks) > _MAX_BLOCKS:
                raise Unsupported("too many header messages")
            if mtype == 0x10:  # continuation
                where = f.uint(body, 0, f.offsets)
                span = f.uint(body, f.offsets, f.lengths)
                if version == 2:
                    if f.read(where, 4) != b"OCHK":
                        raise Unsupported("bad continuation block")
                    blocks.append((where + 4, span - 4, 2))
                else:
                    blocks.append((where, span, 1))
            else:
                yield mtype, body


def _datatype(body: bytes, at: int) -> tuple[int, int, int, int]:
    """(class, size, bit fields, where the properties start)."""
    cls = body[at] & 0x0F
    bits = int.from_bytes(body[at + 1 : at + 4], "little")
    size = int.from_bytes(body[at + 4 : at + 8], "little")
    return cls, size, bits, at + 8


def _elements(f: _File, body: bytes, at: int) -> int:
    version, rank = body[at], body[at + 1]
    if version == 1:
        dims_at = at + 8
    elif version == 2:
        if body[at + 3] == 0:  # scalar
            return 1
        if body[at + 3] == 2:  # null
            return 0
        dims_at = at + 4
    else:
        raise Unsupported(f"dataspace version {version}")
    count = 1
    for i in range(rank):
        count *= f.uint(body, dims_at + i * f.lengths, f.lengths)
    return count if rank else 1


def _global_heap_object(f: _File, collection: int, index: int) -> bytes:
    head = f.read(collection, 8 + f.lengths)
    if head[:4] != b"GCOL":
        raise Unsupported("bad global heap collection")
    size = f.uint(head, 8, f.lengths)
    if size > _MAX_STRING:
        raise Unsupported("global heap collection too large")
    data = f.read(collection, size)
    pos = 8 + f.lengths
    while pos + 8 + f.lengths <= size:
        obj = f.uint(data, pos, 2)
        length = f.uint(data, pos + 8, f.lengths)
        if obj == index:
            return data[pos + 8 + f.lengths : pos + 8 + f.lengths + length]
        if obj == 0:
            break
        pos += 8 + f.lengths + -(-length // 8) * 8
    raise Unsupported(f"global heap object {index} not found")


def _attribute(f: _File, body: bytes) -> tuple[str, str | None]:
    version = body[0]
    name_size, type_size, space_size = (int.from_bytes(body[i : i + 2], "little") for i in (2, 4, 6))
    pos = 8 if version in (1, 2) else 9
    pad = (lambda n: -(-n // 8) * 8) if version == 1 else (lambda n: n)
    name = body[pos : pos + name_size].rstrip(b"\0").decode("utf-8", "replace")
    type_at = pos + pad(name_size)
    space_at = type_at + pad(type_size)
    data_at = space_at + pad(space_size)
    cls, size, bits, _ = _datatype(body, type_at)
    if _elements(f, body, space_at) != 1:
        return name, None
    if cls == 3:  # fixed-length string
        return name, body[data_at : data_at + size].rstrip(b"\0").decode("utf-8", "replace")
    if cls == 9 and bits & 0x0F == 1:  # variable-length string: length, heap collection, index
        collection = f.uint(body, data_at + 4, f.offsets)
        index = f.uint(body, data_at + 4 + f.offsets, 4)
        return name, _global_heap_object(f, collection, index).decode("utf-8", "replace")
    return name, None


def root_attributes(reader: ChunkReader, names: tuple[str, ...]) -> dict[str, str]:
    """The string attributes in ``names`` found on the root group."""
    f, root = _superblock(reader)
    found: dict[str, str] = {}
    dense = False
    for mtype, body in _messages(f, root):
        if mtype == 0x0C:
            try:
                name, value = _attribute(f, body)
            except (IndexError, ValueError) as exc:
                raise Unsupported(f"malformed attribute message: {exc}") from None
            if name in names and value is not None:
                found[name] = value
        elif mtype == 0x15:  # attribute info: attributes may live in dense storage
            dense = len(body) > 4 and int.from_bytes(body[2 + (2 if body[1] & 1 else 0):][: f.offsets], "little") != (1 << (8 * f.offsets)) - 1
    if dense and len(found) < len(names):
        raise Unsupported("attributes in dense storage (a fractal heap)")
    return found
