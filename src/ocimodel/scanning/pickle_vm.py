"""A pickle disassembler that follows the unpickler's stack and memo without loading
anything, so that every callable a load would import or invoke is known by name.

``pickletools``' opcode table and argument readers tokenize (bytes and strings longer than
64 KiB are skipped, not read into memory: a pickled array may hold gigabytes); the stack, the memo, marks and what each opcode does to them are simulated here, close to
CPython's own unpickler: a value is a literal (str, bytes, int, ...), a container of values,
a :class:`Global` (what GLOBAL, STACK_GLOBAL or INST imported) or a :class:`Made` (what a
call, an instantiation or a persistent load returned, which is never computed). Each
import, call and mutation of an imported object is recorded as an :class:`Event` with the
byte offset of its opcode; :mod:`ocimodel.scanning.pickle_policy` judges them.

A stream may hold several pickles one after another (the legacy PyTorch format, a payload
appended to a benign pickle); the memo carries over, as it does when one Unpickler's load()
is called again. When a pickle stops parsing (truncated, an unknown opcode, an operation a
load would fail on), the events up to that opcode stand: a load would have executed them."""

from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickletools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = [
    "Event",
    "Global",
    "Made",
    "PickleRun",
    "RawHook",
    "StopLoad",
    "render",
    "run_pickles",
]

# A bytes or str literal longer than this is kept as its length only: a pickled tensor or
# array carries megabytes that no verdict depends on.
_KEEP_LITERAL = 64 * 1024


@dataclass(eq=False)
class Global:
    """An object a load imports: ``module`` and ``name`` as the unpickler resolves them."""

    module: str
    name: str
    offset: int

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Made:
    """What a call, an instantiation or a persistent load returned (never computed)."""

    callee: object
    args: object
    offset: int
    kind: str  # call, new, obj, inst, persistent, ext
    state: object = None  # the BUILD state, when one was applied
    attrs: dict = field(default_factory=dict)  # instance attributes BUILD set from a dict


@dataclass(eq=False)
class Blob:
    """A literal too large to keep: its type and length."""

    kind: str
    length: int


@dataclass(eq=False)
class PDict:
    items: list


@dataclass(eq=False)
class PSet:
    items: list
    frozen: bool = False


class _Mark:
    pass


@dataclass
class Event:
    """One thing a load would do.

    kind: ``import`` (a global is resolved), ``call`` (``callee`` invoked with ``args``;
    ``how`` says by which opcode: reduce, newobj, obj, inst, build), ``dynamic-call`` (a
    value computed at load time is called), ``dynamic-global`` (STACK_GLOBAL with a name
    that is not a literal), ``mutate`` (an imported object is changed in place: BUILD,
    SETITEM(S), APPEND(S), ADDITEMS), ``dunder-state`` (BUILD sets a dunder attribute),
    ``ext`` (EXT1/2/4: a global taken from copyreg's extension registry), ``stop`` (the
    pickle stops parsing; ``detail`` says why), ``trailing`` (bytes after the last pickle
    that are not one)."""

    kind: str
    offset: int
    callee: object = None
    args: object = None
    how: str = ""
    detail: str = ""


# A hook that consumes raw bytes the stream holds after a BUILD (joblib writes array data
# there): given the object BUILD returned and the stream, it reads what a load would read and
# returns events of its own, or None when the object is not one it knows.
RawHook = Callable[[object, "PickleRun"], "list[Event] | None"]


class StopLoad(Exception):
    """The load fails at this opcode (raised by the simulation and by hooks)."""


class PickleRun:
    """Simulates loads over one binary stream. ``base`` is added to every offset (the
    stream's position in its file), ``hooks`` read raw bytes a library appends."""

    def __init__(self, stream: BinaryIO, *, base: int = 0, hooks: tuple[RawHook, ...] = (), depth: int = 0):
        self.stream = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
        self.base = base
        self.hooks = hooks
        self.depth = depth
        self.events: list[Event] = []
        self.memo: dict[int, object] = {}
        self.pickles = 0
        self.raw_read = False  # a hook read raw bytes a plain pickle.load would parse as opcodes

    # -- the stream ------------------------------------------------------------------
    def tell(self) -> int:
        return self.base + self.stream.tell()

    def read(self, n: int) -> bytes:
        return self.stream.read(n)

    def skip(self, n: int) -> int:
        """Skip ``n`` bytes without keeping them; returns how many were there."""
        skipped = 0
        while skipped < n:
            chunk = self.stream.read(min(1 << 20, n - skipped))
            if not chunk:
                break
            skipped += len(chunk)
        return skipped

    def _position(self, fallback: int) -> int:
        try:
            return self.tell()
        except (OSError, ValueError):
            return fallback

    def at_end(self) -> bool:
        return not self.stream.peek(1)

    # -- loads -----------------------------------------------------------------------
    def run_all(self, limit: int | None = None) -> list[Event]:
        """Every pickle in the stream, one after another (at most ``limit``)."""
        while not self.at_end() and (limit is None or self.pickles < limit):
            start = self.tell()
            before = len(self.events)
            ok, ops = self.load_one()
            if not ok:
                if self.pickles > 1 and ops == 0:
                    # The bytes after the last pickle are not one: nothing loads them.
                    del self.events[before:]
                    self.events.append(Event("trailing", start, detail="bytes after the last pickle are not a pickle"))
                break
        return self.events

    def load_one(self) -> tuple[bool, int]:
        """One load: returns whether it reached STOP, and how many opcodes it read."""
        self.pickles += 1
        stack: list = []
        metastack: list[list] = []
        proto = 0
        ops = 0
        emit = self.events.append
        ops_iter: Iterator = self._tokens()
        offset = self.tell()
        try:
            for opcode, arg, pos in ops_iter:
                ops += 1
                offset = self.base + pos
                name = opcode.name
                # the most frequent opcodes first: the chain below is walked in order
                if name in _MEMO_PUTS:
                    if name == "MEMOIZE":
                        self.memo[len(self.memo)] = _top(stack)
                    else:
                        self.memo[int(arg)] = _top(stack)
                elif name in _LITERAL_OPS:
                    stack.append(arg)
                elif name in _MEMO_GETS:
                    if int(arg) not in self.memo:
                        raise StopLoad(f"memo key {arg} was never stored")
                    stack.append(self.memo[int(arg)])
                elif name == "MARK":
                    metastack.append(stack)
                    stack = []
                elif name == "EMPTY_DICT":
                    stack.append(PDict([]))
                elif name == "EMPTY_LIST":
                    stack.append([])
                elif name in ("SETITEMS", "APPENDS"):
                    items = stack
                    stack = _pop_mark(metastack)
                    self._mutate(_top(stack), name, items, offset)
                elif name == "PROTO":
                    proto = arg
                elif name == "FRAME":
                    pass
                elif name == "STOP":
                    _pop(stack)
                    return True, ops
                elif name == "POP":
                    if stack:
                        stack.pop()
                    else:
                        stack = _pop_mark(metastack)
                elif name == "POP_MARK":
                    stack = _pop_mark(metastack)
                elif name == "DUP":
                    stack.append(_top(stack))
                elif name == "EMPTY_TUPLE":
                    stack.append(())
                elif name == "EMPTY_SET":
                    stack.append(PSet([]))
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                    n = int(name[-1])
                    if len(stack) < n:
                        raise StopLoad("stack underflow")
                    items = tuple(stack[-n:])
                    del stack[-n:]
                    stack.append(items)
                elif name == "TUPLE":
                    items = stack
                    stack = _pop_mark(metastack)
                    stack.append(tuple(items))
                elif name == "LIST":
                    items = stack
                    stack = _pop_mark(metastack)
                    stack.append(list(items))
                elif name == "DICT":
                    items = stack
                    stack = _pop_mark(metastack)
                    stack.append(PDict(list(zip(items[::2], items[1::2]))))
                elif name == "FROZENSET":
                    items = stack
                    stack = _pop_mark(metastack)
                    stack.append(PSet(list(items), frozen=True))
                elif name in ("GLOBAL", "INST"):
                    module, _, qualname = arg.partition(" ")
                    glob = self._global(module, qualname, proto, offset)
                    if name == "GLOBAL":
                        stack.append(glob)
                    else:
                        args = tuple(stack)
                        stack = _pop_mark(metastack)
                        emit(Event("call", offset, glob, args, how="inst"))
                        stack.append(Made(glob, args, offset, "inst"))
                elif name == "STACK_GLOBAL":
                    qualname = _pop(stack)
                    module = _pop(stack)
                    if isinstance(module, str) and isinstance(qualname, str):
                        stack.append(self._global(module, qualname, proto, offset))
                    elif not isinstance(module, (str, Made)) or not isinstance(qualname, (str, Made)):
                        raise StopLoad("STACK_GLOBAL on a value that is not a string")
                    else:
                        emit(Event("dynamic-global", offset, detail=f"{_render(module)} {_render(qualname)}"))
                        stack.append(Global("?", "?", offset))
                elif name in ("EXT1", "EXT2", "EXT4"):
                    emit(Event("ext", offset, detail=f"extension code {arg}"))
                    stack.append(Made(None, arg, offset, "ext"))
                elif name == "REDUCE":
                    args = _pop(stack)
                    func = _pop(stack)
                    stack.append(self._call(func, args, offset, "reduce"))
                elif name == "NEWOBJ":
                    args = _pop(stack)
                    cls = _pop(stack)
                    stack.append(self._call(cls, args, offset, "newobj"))
                elif name == "NEWOBJ_EX":
                    kwargs = _pop(stack)
                    args = _pop(stack)
                    cls = _pop(stack)
                    stack.append(self._call(cls, (args, kwargs), offset, "newobj"))
                elif name == "OBJ":
                    items = stack
                    stack = _pop_mark(metastack)
                    if not items:
                        raise StopLoad("OBJ without a class")
                    stack.append(self._call(items[0], tuple(items[1:]), offset, "obj"))
                elif name == "BUILD":
                    state = _pop(stack)
                    obj = _top(stack)
                    self._build(obj, state, offset)
                    for hook in self.hooks:
                        extra = hook(obj, self)
                        if extra is not None:
                            stack[-1] = Made(obj, None, offset, "call")
                            self.events.extend(extra)
                            break
                elif name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"):
                    if name == "APPEND":
                        items = [_pop(stack)]
                    elif name == "SETITEM":
                        value = _pop(stack)
                        items = [_pop(stack), value]
                    else:
                        items = stack
                        stack = _pop_mark(metastack)
                    target = _top(stack)
                    self._mutate(target, name, items, offset)
                elif name in ("PERSID", "BINPERSID"):
                    pid = arg if name == "PERSID" else _pop(stack)
                    stack.append(Made(None, pid, offset, "persistent"))
                elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                    if name == "NEXT_BUFFER":
                        raise StopLoad("out-of-band buffer: a plain load has none")
                else:  # pragma: no cover - every protocol 0-5 opcode is handled above
                    raise StopLoad(f"opcode {name} not simulated")
            raise StopLoad("ends without STOP")
        except StopLoad as stop:
            emit(Event("stop", offset, detail=f"{stop}"))
        except Exception as error:  # noqa: BLE001 - pickletools (truncated data, unknown opcode, bad argument) or the stream (a corrupt compressed stream): the load fails here too
            emit(Event("stop", self._position(offset), detail=_short(f"{type(error).__name__}: {error}")))
        return False, ops

    def _tokens(self) -> Iterator[tuple[pickletools.OpcodeInfo, object, int]]:
        """(opcode, argument, position) up to STOP, as ``pickletools.genops`` gives them,
        except that long bytes and strings are skipped and stand as a :class:`Blob`."""
        stream = self.stream
        tell, read = stream.tell, stream.read
        while True:
            pos = tell()
            code = read(1)
            if not code:
                raise ValueError("pickle exhausted before seeing STOP")
            opcode = _CODE2OP.get(code)
            if opcode is None:
                raise ValueError(f"at position {pos}, opcode {code!r} unknown")
            fast = _FIXED.get(code)
            if opcode.arg is None:
                arg = None
            elif fast is not None:
                width, decode = fast
                raw = read(width)
                if len(raw) < width:
                    raise ValueError(f"{opcode.name}: its argument runs past the end")
                arg = decode(raw)
            elif code in _SHORT:
                size = read(1)
                data = read(size[0]) if size else b""
                if not size or len(data) < size[0]:
                    raise ValueError(f"{opcode.name}: its argument runs past the end")
                arg = data.decode("utf-8", "surrogatepass") if code == b"\x8c" else (data.decode("latin-1") if code == b"U" else data)
            elif opcode.name in _SIZED:
                width, signed, kind = _SIZED[opcode.name]
                raw = stream.read(width)
                if len(raw) < width:
                    raise ValueError(f"{opcode.name}: its length runs past the end")
                n = int.from_bytes(raw, "little", signed=signed)
                if n < 0:
                    raise ValueError(f"{opcode.name}: a negative length")
                if n > _KEEP_LITERAL:
                    if self.skip(n) < n:
                        raise ValueError(f"{opcode.name} of {n} bytes runs past the end")
                    arg = Blob(kind, n)
                else:
                    data = stream.read(n)
                    if len(data) < n:
                        raise ValueError(f"{opcode.name} of {n} bytes runs past the end")
                    arg = data.decode("utf-8", "surrogatepass") if kind == "str" else data
                    if opcode.name == "BINSTRING":
                        arg = data.decode("latin-1")
            else:
                arg = opcode.arg.reader(stream)
                if opcode.name in _LINE_LITERALS:
                    arg = _literal(arg)
            yield opcode, arg, pos
            if opcode.name == "STOP":
                return

    # -- what the opcodes do -----------------------------------------------------------
    def _global(self, module: str, qualname: str, proto: int, offset: int) -> Global:
        if proto < 3 or module in _compat_pickle.IMPORT_MAPPING or (module, qualname) in _compat_pickle.NAME_MAPPING:
            # A protocol 0-2 load maps Python 2 names (__builtin__, copy_reg, ...) as CPython
            # does; a later protocol fails on them, but judging them by what they map to costs
            # nothing and survives a loader that maps them anyway.
            if (module, qualname) in _compat_pickle.NAME_MAPPING:
                module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        glob = Global(module, qualname, offset)
        self.events.append(Event("import", offset, glob))
        return glob

    def _call(self, func: object, args: object, offset: int, how: str) -> object:
        if isinstance(func, Global):
            self.events.append(Event("call", offset, func, args, how=how))
            value = _evaluate(func, args)
            if value is not _NOT_EVALUATED:
                return value
            return Made(func, args, offset, "call" if how == "reduce" else "new")
        if isinstance(func, Made) and func.kind == "persistent" and _names_class(func.args):
            # PyTorch's legacy persistent ids ("module", cls, source file, source) load as cls.
            return self._call(func.args[1], args, offset, how)  # type: ignore[index]
        if isinstance(func, Made):
            self.events.append(Event("dynamic-call", offset, func, args, how=how))
            return Made(func, args, offset, "call")
        raise StopLoad(f"{how} of a {type(func).__name__}, which is not callable")

    def _build(self, obj: object, state: object, offset: int) -> None:
        if isinstance(obj, Global):
            self.events.append(Event("mutate", offset, obj, state, how="build"))
            return
        if not isinstance(obj, Made):
            return
        setstate = obj.attrs.get("__setstate__")
        if setstate is not None:
            # An instance whose __dict__ was given a __setstate__ calls it on the next BUILD.
            self._call(setstate, (state,), offset, "build")
        obj.state = state
        dict_state, slot_state = (state if isinstance(state, tuple) and len(state) == 2 else (state, None))
        for part in (dict_state, slot_state):
            if isinstance(part, PDict):
                for key, value in part.items:
                    if isinstance(key, str):
                        obj.attrs[key] = value
                        if key.startswith("__") and key.endswith("__"):
                            self.events.append(Event("dunder-state", offset, obj.callee, key, how="build"))

    def _mutate(self, target: object, how: str, items: list, offset: int) -> None:
        if isinstance(target, Global):
            self.events.append(Event("mutate", offset, target, tuple(items), how=how.lower()))
        elif isinstance(target, list) and how in ("APPEND", "APPENDS"):
            target.extend(items)
        elif isinstance(target, PDict) and how in ("SETITEM", "SETITEMS"):
            target.items.extend(zip(items[::2], items[1::2]))
        elif isinstance(target, PSet) and how == "ADDITEMS":
            target.items.extend(items)
        elif not isinstance(target, Made):
            raise StopLoad(f"{how} on a {type(target).__name__}")


_LITERAL_OPS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NONE",
    "NEWTRUE", "NEWFALSE", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "FLOAT", "BINFLOAT",
}  # fmt: skip

_NOT_EVALUATED = object()
_CODE2OP = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
# Fixed-width arguments of the frequent opcodes, read without pickletools' per-call
# overhead: code -> (width, decoder).
_FIXED = {
    b"q": (1, lambda raw: raw[0]),  # BINPUT
    b"h": (1, lambda raw: raw[0]),  # BINGET
    b"K": (1, lambda raw: raw[0]),  # BININT1
    b"M": (2, lambda raw: int.from_bytes(raw, "little")),  # BININT2
    b"J": (4, lambda raw: int.from_bytes(raw, "little", signed=True)),  # BININT
    b"r": (4, lambda raw: int.from_bytes(raw, "little")),  # LONG_BINPUT
    b"j": (4, lambda raw: int.from_bytes(raw, "little")),  # LONG_BINGET
    b"G": (8, lambda raw: struct.unpack(">d", raw)[0]),  # BINFLOAT
    b"\x80": (1, lambda raw: raw[0]),  # PROTO
    b"\x95": (8, lambda raw: int.from_bytes(raw, "little")),  # FRAME
}
# One-byte-length arguments: SHORT_BINUNICODE, SHORT_BINBYTES, SHORT_BINSTRING.
_SHORT = {b"\x8c", b"C", b"U"}
_MEMO_PUTS = {"MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"}
_MEMO_GETS = {"BINGET", "LONG_BINGET", "GET"}
_LINE_LITERALS = {"STRING", "UNICODE"}
# Opcodes whose argument is a length-prefixed run of bytes: (length width, signed, kind).
_SIZED = {
    "BINBYTES": (4, False, "bytes"), "BINBYTES8": (8, False, "bytes"), "BYTEARRAY8": (8, False, "bytes"),
    "BINUNICODE": (4, False, "str"), "BINUNICODE8": (8, False, "str"), "BINSTRING": (4, True, "bytes"),
}  # fmt: skip

# Pure functions of literals that a pickle may use to build a string (a global's name, an
# argument): evaluated here so that STACK_GLOBAL on their result still shows a name. Only
# codecs that turn text or bytes into text or bytes are run.
_TEXT_CODECS = {"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii", "rot13", "rot_13", "hex", "base64", "hex_codec", "base64_codec"}


def _evaluate(func: Global, args: object) -> object:
    if not isinstance(args, tuple) or not all(isinstance(a, (str, bytes, int)) for a in args):
        return _NOT_EVALUATED
    try:
        if func.full in ("_codecs.encode", "_codecs.decode", "codecs.encode", "codecs.decode") and len(args) == 2:
            data, codec = args
            if isinstance(codec, str) and codec.lower() in _TEXT_CODECS:
                op = codecs.encode if func.name == "encode" else codecs.decode
                return op(data, codec)
        if func.full == "builtins.str" and len(args) <= 2 and all(isinstance(a, (str, bytes)) for a in args):
            return str(*args) if len(args) == 2 and args[1].lower() in _TEXT_CODECS else _NOT_EVALUATED
        if func.full == "builtins.bytes" and len(args) == 2 and args[1] in _TEXT_CODECS:
            return bytes(*args)
    except (ValueError, TypeError, LookupError):
        return _NOT_EVALUATED
    return _NOT_EVALUATED


def _names_class(pid: object) -> bool:
    return isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module" and isinstance(pid[1], Global)


def _literal(value: object) -> object:
    if isinstance(value, Blob):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) > _KEEP_LITERAL:
        return Blob("bytes", len(value))
    if isinstance(value, str) and len(value) > _KEEP_LITERAL:
        return Blob("str", len(value))
    return value


def _pop(stack: list) -> object:
    if not stack:
        raise StopLoad("stack underflow")
    return stack.pop()


def _top(stack: list) -> object:
    if not stack:
        raise StopLoad("stack underflow")
    return stack[-1]


def _pop_mark(metastack: list[list]) -> list:
    if not metastack:
        raise StopLoad("no MARK to pop to")
    return metastack.pop()


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _render(value: object, limit: int = 160) -> str:
    """A value as a person reads it in a finding: literals shown, the rest named."""
    return _short(_render_inner(value, 0), limit)


def _render_inner(value: object, depth: int) -> str:
    if depth > 4:
        return "…"
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Made):
        if value.kind == "persistent":
            return f"persistent_id({_render_inner(value.args, depth + 1)})"
        if value.kind == "ext":
            return f"ext({value.args})"
        return f"{_render_inner(value.callee, depth + 1)}(…)"
    if isinstance(value, Blob):
        return f"<{value.kind} of {value.length} bytes>"
    if isinstance(value, tuple):
        inner = ", ".join(_render_inner(v, depth + 1) for v in value[:8])
        return f"({inner}{',' if len(value) == 1 else ''}{', …' if len(value) > 8 else ''})"
    if isinstance(value, list):
        return "[" + ", ".join(_render_inner(v, depth + 1) for v in value[:8]) + (", …]" if len(value) > 8 else "]")
    if isinstance(value, PDict):
        pairs = ", ".join(f"{_render_inner(k, depth + 1)}: {_render_inner(v, depth + 1)}" for k, v in value.items[:8])
        return "{" + pairs + (", …}" if len(value.items) > 8 else "}")
    if isinstance(value, PSet):
        return "{" + ", ".join(_render_inner(v, depth + 1) for v in value.items[:8]) + "}"
    if isinstance(value, (bytes, bytearray)) and len(value) > 48:
        return repr(bytes(value[:48])) + "…"
    return repr(value)


render = _render


def run_pickles(stream: BinaryIO, *, base: int = 0, hooks: tuple[RawHook, ...] = (), limit: int | None = None) -> list[Event]:
    """The events of every pickle in ``stream`` (at most ``limit`` of them)."""
    return PickleRun(stream, base=base, hooks=hooks).run_all(limit)
