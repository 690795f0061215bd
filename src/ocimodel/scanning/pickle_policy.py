"""The verdict on what a pickle would import and call (docs/scanning.md, "Pickles").

An allowlist decides what is safe: the callables the ML libraries' own save formats use
(tensor and storage rebuilds, NumPy's reconstruct and dtype, collections, the standard
``copyreg`` reconstruction of estimator classes). A short list of modules and builtins that
run code, import modules, touch files, processes or the network, or reach such a callable
through indirection, makes a finding critical. Anything else is shown for review at medium
severity, and a user can trust it with ``allow`` globs over ``module.qualname`` (never a
dangerous one: no glob turns ``os.system`` into a safe call).

Three tiers of trust, because a class is safer to instantiate than a function is to call:

- ``CALLABLE``: safe to call with any literal arguments (data constructors, rebuilds);
- library modules (``LIBRARY_MODULES``): their classes may be created and their state set
  (the standard ``__reduce__`` paths), their functions referenced but not called;
- everything else is unknown."""

from __future__ import annotations

import contextvars
import fnmatch
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ocimodel.scanning.findings import Severity
from ocimodel.scanning.pickle_vm import Event, Global, Made, render

__all__ = ["Verdict", "classify", "judge", "user_allowlist"]

# Modules whose every name is dangerous to import or call from a pickle. A module listed
# covers its submodules.
DANGEROUS_MODULES = frozenset(
    """
    os posix nt posixpath ntpath subprocess _posixsubprocess sys importlib imp runpy
    socket _socket ssl select selectors socketserver asyncio shutil pty tty termios fcntl
    mmap resource signal ctypes _ctypes cffi code codeop timeit pdb bdb trace cProfile
    profile doctest pydoc webbrowser marshal pickle _pickle pickletools dill cloudpickle
    shelve copy types multiprocessing concurrent threading _thread gc inspect ast
    compileall py_compile zipimport pkgutil pip setuptools distutils ensurepip venv site
    sysconfig platform idlelib lib2to3 test unittest logging.config logging.handlers
    logging.FileHandler tempfile pathlib io _io glob
    fileinput zipfile tarfile gzip http urllib urllib3 requests httpx
    ftplib smtplib telnetlib poplib imaplib nntplib xmlrpc wsgiref cgi mailcap
    operator _operator functools _functools itertools uuid._popen
    uuid._get_command_stdout _osx_support _aix_support
    readline rlcompleter crypt pwd grp spwd jinja2 yaml numexpr
    numpy.testing numpy.f2py numpy.distutils numpy.ctypeslib numpy.lib.npyio
    numpy.lib.format numpy.lib._npyio_impl numpy.load numpy.loadtxt numpy.fromfile
    numpy.genfromtxt numpy.save numpy.savez numpy.memmap numpy.core.memmap
    torch.load torch.save torch.serialization torch.hub torch.jit torch.package
    torch.utils.cpp_extension torch.ops torch.classes torch._dynamo torch.fx torch.compile
    torch._C torch.storage._load_from_bytes torch._ops torch.library torch._inductor
    torch.multiprocessing torch.distributed torch.utils.data torch.utils.collect_env
    torch.testing numpy.DataSource numpy.lib.DataSource numpy.lib._datasource
    torch.utils.tensorboard torch.utils.model_zoo torch.utils.benchmark torch.utils.file_baton
    torch.utils.bottleneck torch.onnx torch.compiler torch.export numpy._core.memmap
    joblib.load joblib.dump joblib.numpy_pickle.load joblib.parallel joblib.memory
    pandas.read_pickle pandas.eval pandas.io pandas.core.computation
    tensorflow keras scipy.io sklearn.datasets sklearn.utils._testing
    """.split()
)

# The last name of a callable that runs code, loads a pickle, or touches files, processes
# or the network, under whatever module re-exports it.
_DANGEROUS_NAMES = frozenset(
    """
    eval exec execfile compile open getattr setattr delattr __import__ breakpoint input
    system popen popen2 popen3 popen4 spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp
    spawnvpe execl execle execlp execlpe execv execve execvp execvpe fork forkpty posix_spawn
    load loads load_module run run_path run_module runsource runcode interact call
    check_call check_output getoutput getstatusoutput Popen import_module urlopen
    urlretrieve rmtree remove unlink rename chmod chown symlink set_trace
    fromfile tofile loadtxt genfromtxt savetxt save savez savez_compressed dump open_memmap
    load_library
    """.split()
)

# Builtins that only build data; every other builtin (eval, exec, getattr, open, __import__,
# compile, setattr, map, ...) is dangerous.
_SAFE_BUILTINS = {
    "set", "frozenset", "slice", "complex", "bytearray", "bytes", "int", "float", "bool",
    "str", "list", "tuple", "dict", "object", "range", "NotImplemented", "Ellipsis",
}  # fmt: skip

_DANGEROUS_TOPS = frozenset(name.split(".")[0] for name in DANGEROUS_MODULES if "." not in name)
# Modules that another module's namespace often holds (``somelib.os``): a global of that
# name is the module itself. Generic words (copy, types, io, test...) are left out here.
_MODULE_NAMES = frozenset(
    "os posix nt sys subprocess importlib runpy shutil socket pickle _pickle marshal ctypes pty webbrowser pdb".split()
)

# Callables safe to call with any arguments (their own arguments that are classes or
# functions are judged in turn, see _ARGUMENT_CALLABLES).
CALLABLE = frozenset(
    [f"builtins.{name}" for name in _SAFE_BUILTINS]
    + """
    copyreg._reconstructor copyreg.__newobj__ copyreg.__newobj_ex__
    _codecs.encode codecs.encode codecs.decode
    collections.OrderedDict collections.defaultdict collections.deque collections.Counter
    datetime.datetime datetime.date datetime.time datetime.timedelta datetime.timezone
    decimal.Decimal fractions.Fraction re._compile uuid.UUID
    numpy.core.multiarray._reconstruct numpy._core.multiarray._reconstruct
    numpy.core.multiarray.scalar numpy._core.multiarray.scalar
    numpy.core.numeric._frombuffer numpy._core.numeric._frombuffer
    numpy.dtype numpy.ndarray numpy.matrix numpy.ma.core._mareconstruct numpy.ma.core.MaskedArray
    numpy.random._pickle.__randomstate_ctor numpy.random._pickle.__bit_generator_ctor
    numpy.random._pickle.__generator_ctor
    torch._tensor._rebuild_from_type torch._tensor._rebuild_from_type_v2
    torch.storage.UntypedStorage torch.storage.TypedStorage torch.Size torch.device
    torch.Tensor torch.nn.parameter.Parameter torch.nn.parameter.Buffer
    torch.nn.parameter.UninitializedParameter torch.serialization._get_layout
    torch.strided torch.sparse_coo torch.sparse_csr torch.sparse_csc torch.sparse_bsr
    torch.sparse_bsc torch._mkldnn torch.contiguous_format torch.channels_last
    torch.channels_last_3d torch.preserve_format
    pandas._libs.internals._unpickle_block pandas.core.internals.blocks.new_block
    pandas.core.indexes.base._new_Index pandas._libs.arrays.__pyx_unpickle_NDArrayBacked
    pandas._libs.tslibs.timestamps._unpickle_timestamp
    pandas._libs.tslibs.timedeltas._timedelta_unpickle
    """.split()
)
_CALLABLE_PATTERNS = [
    re.compile(p)
    for p in (
        r"torch\._utils\._rebuild_[a-z0-9_]+",
        r"torch\.[A-Za-z0-9]*Storage",
        r"torch\.(float|double|half|bfloat16|complex|cfloat|cdouble|chalf|uint|int|long|short|bool|qint|quint|float8_)[a-z0-9_]*",
        r"numpy(\._core|\.core)?\.(bool_?|u?int(8|16|32|64|c|p)?|u?byte|u?short|u?longlong|u?long|intp|uintp|"
        r"float(16|32|64|96|128)?|half|single|double|longdouble|complex(64|128|192|256)?|csingle|cdouble|"
        r"clongdouble|str_|bytes_|void|object_|datetime64|timedelta64|generic|number)",
        r"numpy\.dtypes\.[A-Za-z0-9]+DType",
        r"numpy\.random\._(mt19937|pcg64|philox|sfc64)\.[A-Z][A-Za-z0-9]*",
        r"numpy\.random\.(mtrand|_generator)\.(RandomState|Generator)",
    )
]

# Library modules whose classes the standard reconstruction paths create (and whose
# __setstate__ sets data): scikit-learn estimators, XGBoost and LightGBM boosters, SciPy
# sparse matrices, PyTorch modules, pandas frames, joblib's array wrapper.
LIBRARY_MODULES = (
    "sklearn", "xgboost", "lightgbm", "catboost", "scipy.sparse", "scipy.stats",
    "torch.nn.modules", "torch.nn.utils", "torch.optim", "pandas.core", "pandas._libs",
    "joblib.numpy_pickle", "numpy.random", "numpy.ma", "numpy", "torch",
)  # fmt: skip

# Arguments of safe callables that a load calls or instantiates in turn: which positions,
# and how they are used.
_ARGUMENT_CALLABLES = {
    "copyreg._reconstructor": ((0, "new"), (1, "base")),
    "copyreg.__newobj__": ((0, "new"),),
    "copyreg.__newobj_ex__": ((0, "new"),),
    "numpy.core.multiarray._reconstruct": ((0, "new"),),
    "numpy._core.multiarray._reconstruct": ((0, "new"),),
    "torch._tensor._rebuild_from_type": ((0, "call"), (1, "new")),
    "torch._tensor._rebuild_from_type_v2": ((0, "call"), (1, "new")),
    "torch._utils._rebuild_wrapper_subclass": ((0, "new"),),
    "torch._utils._rebuild_parameter_with_state": (),
    "collections.defaultdict": ((0, "call"),),
    # NumPy's generator constructors call the class (or constructor) they are given; a
    # bit generator they are given already made is used as it is ("call-if-global")
    "numpy.random._pickle.__bit_generator_ctor": ((0, "call-if-global"),),
    "numpy.random._pickle.__randomstate_ctor": ((0, "call-if-global"), (1, "call-if-global")),
    "numpy.random._pickle.__generator_ctor": ((0, "call-if-global"), (1, "call-if-global")),
}
_DATA_BASES = {f"builtins.{name}" for name in ("object", "dict", "list", "set", "frozenset", "tuple", "int", "float", "str", "bytes", "complex")}

# Dunders that the standard reconstruction names itself; any other dunder in a global's
# name walks attributes (``x.__globals__``, ``module.__builtins__``) to reach anything.
_NAMED_DUNDERS = {"__newobj__", "__newobj_ex__"}

_ALLOW: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("ocimodel_pickle_allow", default=())


@contextmanager
def user_allowlist(globs: Iterable[str]) -> Iterator[None]:
    """Trust the callables matching ``globs`` (``module.qualname`` patterns, e.g.
    ``mylib.models.*``) in every pickle scanned inside the block. Dangerous callables
    stay critical whatever the globs say."""
    token = _ALLOW.set(tuple(globs))
    try:
        yield
    finally:
        _ALLOW.reset(token)


def _dangerous(module: str, qualname: str) -> str | None:
    """Why ``module.qualname`` is dangerous, or None."""
    if module == "?":
        return "its name is computed at load time"
    full = f"{module}.{qualname}"
    parts = qualname.split(".")
    for part in parts:
        if part.startswith("__") and part.endswith("__") and part not in _NAMED_DUNDERS:
            return f"reaches {part} through an attribute"
    if module == "builtins":
        if qualname not in _SAFE_BUILTINS:
            return "a builtin that runs code or reaches other objects"
        return None
    for candidate in _prefixes(full):
        if candidate in DANGEROUS_MODULES:
            return f"{candidate} runs code, imports modules or touches files, processes or the network"
    if module == "copyreg" and full not in CALLABLE:
        return "copyreg outside the standard reconstruction"
    if module in ("_codecs", "codecs") and full not in CALLABLE:
        return "codecs outside encode and decode"
    for part in parts[:-1]:
        # an attribute walk through a module that another module imported (torch.os.system)
        if part in _DANGEROUS_TOPS or part == "builtins":
            return f"reaches {part} through {module}"
    if parts[-1] in _DANGEROUS_NAMES or parts[-1] in _MODULE_NAMES:
        # what a module re-exports under a dangerous name (os.system as somelib.system)
        return f"{parts[-1]} runs code, loads pickles or touches files, processes or the network"
    return None
    if module == "copyreg" and full not in CALLABLE:
        return "copyreg outside the standard reconstruction"
    if module in ("_codecs", "codecs") and full not in CALLABLE:
        return "codecs outside encode and decode"
    for candidate in _prefixes(full):
        if candidate in DANGEROUS_MODULES:
            return f"{candidate} runs code, imports modules or touches files, processes or the network"
    return None


def _prefixes(full: str) -> Iterator[str]:
    parts = full.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _callable_safe(full: str) -> bool:
    return full in CALLABLE or any(p.fullmatch(full) for p in _CALLABLE_PATTERNS)


def _library(glob: Global) -> bool:
    return any(glob.module == m or glob.module.startswith(m + ".") for m in LIBRARY_MODULES)


def _is_class_name(qualname: str) -> bool:
    last = qualname.split(".")[-1]
    return last[:1].isupper()


def _user_allowed(full: str) -> bool:
    return any(fnmatch.fnmatchcase(full, glob) for glob in _ALLOW.get())


def classify(glob: Global, how: str) -> tuple[str, str]:
    """("dangerous" | "safe" | "unknown", reason) for ``glob`` used ``how``: ``import``
    (resolved only), ``call`` (called with arguments), ``new`` (a class instantiated
    without its ``__init__``), ``base`` (the base whose ``__init__`` copyreg runs)."""
    full = glob.full
    reason = _dangerous(glob.module, glob.name)
    if reason:
        return "dangerous", reason
    if _callable_safe(full) or _user_allowed(full):
        return "safe", ""
    if how == "base":
        return ("safe", "") if full in _DATA_BASES else ("unknown", "")
    if _library(glob) and how == "call" and glob.name.startswith("__pyx_unpickle_"):
        return "safe", ""  # Cython's reconstruction: its class argument is judged in turn
    if _library(glob) and (how in ("import", "new") or (how == "call" and _is_class_name(glob.name))):
        return "safe", ""
    return "unknown", ""


@dataclass
class Verdict:
    severity: Severity
    rule: str
    detail: str
    offset: int


def judge(events: list[Event]) -> list[Verdict]:
    """The findings for one stream's events: one per rule and callable (the first
    offset; repeats are counted in the detail)."""
    found: dict[tuple[str, str], Verdict] = {}
    counts: dict[tuple[str, str], int] = {}
    called: set[int] = set()

    def add(severity: Severity, rule: str, key: str, detail: str, offset: int) -> None:
        slot = (rule, key)
        counts[slot] = counts.get(slot, 0) + 1
        if slot not in found:
            found[slot] = Verdict(severity, rule, detail, offset)

    def judge_global(glob: Global, how: str, args: object, offset: int) -> None:
        verdict, reason = classify(glob, how)
        if how != "import":
            called.add(id(glob))
        shown = glob.full
        if how == "import":
            what = f"{shown} is imported"
        elif args is None:
            what = f"{shown} is {'instantiated' if how == 'new' else 'called'}"
        else:
            what = f"{shown} is called with {render(args) if isinstance(args, tuple) else render((args,))}"
        if verdict == "dangerous":
            add(Severity.CRITICAL, "pickle.callable.dangerous", shown, f"{what}: {reason}", offset)
        elif verdict == "unknown":
            add(Severity.MEDIUM, "pickle.callable.unknown", shown, f"{what}: not on the allowlist, review it", offset)
        if verdict != "dangerous" and how != "import":
            uses = _ARGUMENT_CALLABLES.get(glob.full, ((0, "new"),) if glob.name.startswith("__pyx_unpickle_") else ())
            for position, use in uses:
                if isinstance(args, tuple) and position < len(args):
                    inner = args[position]
                    if isinstance(inner, Global):
                        judge_global(inner, use.removesuffix("-if-global"), None, offset)
                    elif isinstance(inner, Made) and not use.endswith("-if-global"):
                        add(Severity.CRITICAL, "pickle.callable.dynamic", glob.full,
                            f"{glob.full} is given a value computed at load time to {use}: {render(inner)}", offset)

    calls = [e for e in events if e.kind == "call"]
    for event in calls:
        judge_global(event.callee, "call" if event.how in ("reduce", "obj", "inst", "build") else "new", event.args, event.offset)
    for event in events:
        if event.kind == "import" and id(event.callee) not in called:
            # Dangerous or unknown whether called or not: the import runs the module, and
            # the object may be called by whoever uses the load's result.
            judge_global(event.callee, "import", None, event.offset)
        elif event.kind == "dynamic-call":
            add(Severity.CRITICAL, "pickle.callable.dynamic", str(event.offset),
                f"calls a value computed at load time: {render(event.callee)}{render(event.args)}", event.offset)
        elif event.kind == "dynamic-global":
            add(Severity.CRITICAL, "pickle.global.dynamic", str(event.offset),
                f"imports a global whose name is computed at load time: {event.detail}", event.offset)
        elif event.kind == "mutate":
            add(Severity.CRITICAL, "pickle.global.mutated", event.callee.full,
                f"{event.how.upper()} changes the imported object {event.callee.full} with {render(event.args)}", event.offset)
        elif event.kind == "dunder-state":
            add(Severity.CRITICAL, "pickle.state.dunder", f"{render(event.callee)}.{event.args}",
                f"BUILD sets {event.args} on a {render(event.callee)} instance, which a later BUILD or use calls", event.offset)
        elif event.kind == "ext":
            add(Severity.CRITICAL, "pickle.ext-code", event.detail,
                f"{event.detail}: a global taken from copyreg's extension registry, whatever the loading process registered", event.offset)
        elif event.kind == "stop":
            add(Severity.MEDIUM, "pickle.truncated", str(event.offset),
                f"the pickle stops parsing here ({event.detail}); judged on what a load runs before", event.offset)
        elif event.kind == "trailing":
            add(Severity.INFO, "pickle.trailing-data", "", event.detail, event.offset)
        elif event.kind in ("nested", "note"):
            add(Severity.INFO if event.kind == "note" else Severity.MEDIUM, event.how, event.detail, event.detail, event.offset)
    for slot, verdict in found.items():
        if counts[slot] > 1 and verdict.rule.startswith("pickle.callable"):
            verdict.detail += f" ({counts[slot]} times)"
    return sorted(found.values(), key=lambda v: (-v.severity.rank, v.offset))
