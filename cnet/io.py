"""Model files: one safetensors file holding the weights, the architecture and, optionally,
the optimizer's state.

    cnet.save(model, "model.safetensors", optimizer=opt, extra={"epoch": 3})
    model = cnet.load("model.safetensors")
    model, opt, extra = cnet.load("model.safetensors", with_optimizer=True)

The file is plain safetensors (an 8-byte little-endian header length N, N bytes of JSON
header, then the tensors' raw little-endian bytes). The model's tensors are stored under its
state-dict keys ("0.weight", "0.bias", BatchNorm1d's "running_mean", "running_var",
"num_batches_tracked"), so `safetensors.torch.load_file` gives a dict that
`torch.nn.Sequential.load_state_dict` accepts (filter out the "optimizer." keys first when
the file holds an optimizer). Everything else is JSON in the header's `__metadata__`:

    cnet.format_version  "1"
    cnet.version         the cnet that wrote the file
    cnet.model           {"dtype": "float32", "training": true,
                          "layers": [{"type": "Dense", "config": {...}},
                                     {"type": "Dropout", "config": {"p": 0.5},
                                      "rng_state": [key, counter]}, ...]}
    cnet.optimizer       {"type": "Adam", "step": 10, "param_groups": [{"lr": ..., "params":
                          ["0.weight", ...]}], "state": ["exp_avg", "exp_avg_sq"],
                          "numbers": {}}  (optional: Optimizer.state_dict(), whose state
                          arrays are the tensors "optimizer.<name>" and whose state numbers,
                          such as L-BFGS's counters, are under "numbers")
    cnet.extra           the caller's `extra`, any JSON value (optional)
    cnet.sha256          checksum of the header (less this entry) and of the tensor bytes

Reading treats the file as hostile: the header length, every declared dtype, shape and byte
range are checked against the file's real size before anything is read, the ranges must tile
the data exactly, the architecture is rebuilt only from cnet's own layer and optimizer
classes (an explicit registry: nothing named in a file is imported or called), its tensor
shapes are checked against the file before a model is allocated, and the checksum catches
flipped bits. Every problem is a ValueError naming the file and what is wrong. No pickle.

Writes are atomic: a temporary file in the target's folder is written, flushed, fsync'ed
and renamed over the target, so the target is always a whole old or a whole new file. A
process killed mid-write can leave a temporary ".<name>.*.tmp" file beside the target;
any other failure removes it. Errors name the target, never the temporary file: a missing
folder is a FileNotFoundError saying so (folders are not created), a path that names a
folder an IsADirectoryError, both raised before anything is written.
"""
import collections
import errno
import hashlib
import inspect
import json
import math
import numbers
import os
import reprlib
import struct
import tempfile

import numpy as np

from cnet import layers as _layers
from cnet import optim as _optim
from cnet.model import Sequential

__all__ = ["save", "load", "Checkpoint", "read_safetensors", "write_safetensors",
           "from_torch", "to_torch", "FORMAT_VERSION"]

FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 100 * 1024 * 1024    # the safetensors reference implementation's limit
MAX_LAYERS = 10_000
MAX_NDIM = 32
CHECKSUM_KEY = "cnet.sha256"
OPTIMIZER_PREFIX = "optimizer."

# safetensors dtype names <-> numpy (little-endian) dtypes.
_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
           "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}
_DTYPE_NAMES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}

# The only classes a file can name. Linear is Dense (an alias): it is saved as "Dense".
LAYERS = {cls.__name__: cls for cls in (
    _layers.Dense, _layers.Identity, _layers.ReLU, _layers.LeakyReLU, _layers.Sigmoid,
    _layers.Tanh, _layers.Step, _layers.Softmax, _layers.Dropout, _layers.BatchNorm1d)}
OPTIMIZERS = {cls.__name__: cls for cls in (
    _optim.SGD, _optim.Adam, _optim.AdamW, _optim.Adagrad, _optim.RMSprop, _optim.LBFGS)}

Checkpoint = collections.namedtuple("Checkpoint", ["model", "optimizer", "extra"])
Checkpoint.__doc__ = ("What `load(path, with_optimizer=True)` returns: the model, the optimizer "
                      "(None when the file holds none) and the `extra` saved with it (None "
                      "when none was).")


# --- the safetensors container ---------------------------------------------------------------

def _canonical(header):
    """The bytes the checksum covers for a header: its JSON in one canonical form."""
    return json.dumps(header, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def _dtype_name(dtype, key):
    name = _DTYPE_NAMES.get(np.dtype(dtype).newbyteorder("="))
    if name is None:
        raise TypeError(f"tensors[{key!r}]: dtype {np.dtype(dtype)} cannot be stored in "
                        f"safetensors (supported: {sorted(_DTYPES)})")
    return name


def _raw(arr):
    """The bytes of a C-contiguous array, as a flat uint8 view (also for empty arrays)."""
    return arr.reshape(-1).view(np.uint8)


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` ({name: array}) and `metadata` ({str: str}) to `path` as safetensors,
    atomically. A checksum of the header and data is added to the metadata (CHECKSUM_KEY);
    read_safetensors verifies it."""
    if not hasattr(tensors, "items"):
        raise TypeError(f"tensors: expected a mapping of names to arrays, "
                        f"got {type(tensors).__name__}")
    metadata = {} if metadata is None else metadata
    if not hasattr(metadata, "items") or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("metadata: expected a mapping of str to str")
    arrays = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__" or not name:
            raise ValueError(f"tensors: invalid tensor name {name!r}")
        arr = np.asarray(value)
        dtype_name = _dtype_name(arr.dtype, name)
        arr = np.asarray(arr, dtype=np.dtype(_DTYPES[dtype_name]))   # little-endian
        arrays.append((name, dtype_name, arr if arr.flags.c_contiguous else arr.copy()))
    # Widest element first (stable otherwise), as the reference writer does, so that every
    # tensor starts at a multiple of its element size (the header is padded to 8 bytes).
    arrays.sort(key=lambda item: -item[2].dtype.itemsize)
    header, offset = {}, 0
    for name, dtype_name, arr in arrays:
        header[name] = {"dtype": dtype_name, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    header["__metadata__"] = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    digest = hashlib.sha256(_canonical(header))
    for _, _, arr in arrays:
        digest.update(_raw(arr))
    header["__metadata__"][CHECKSUM_KEY] = digest.hexdigest()
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, _, arr in arrays:
            f.write(_raw(arr))

    _atomic_write(path, write)


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it and rename it over
    `path`. On any error the temporary file is removed and `path` is untouched."""
    path = os.fspath(path)
    if not path:
        raise ValueError("path: expected a file path, got ''")
    folder = os.path.dirname(os.path.abspath(path))
    # The errors name `path`, not the temporary file, which the user never asked for; a
    # folder is refused before anything is written (the rename would fail only at the end).
    if not os.path.basename(path) or os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Cannot write the file: the path names a folder",
                                path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:
        reason = {errno.ENOENT: f"its folder {folder!r} does not exist",
                  errno.ENOTDIR: f"a part of its folder path {folder!r} is a file"}.get(
            exc.errno, f"cannot create a file in its folder {folder!r} ({exc.strerror})")
        raise type(exc)(exc.errno, f"Cannot write the file: {reason}", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                mode = os.stat(path).st_mode & 0o7777
            except OSError:
                mode = 0o666 & ~_umask()
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:   # make the rename itself durable; not every platform lets a folder be fsync'ed
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _reject_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):        # 1e999: JSON's grammar, but no double
        raise ValueError(f"{text} is beyond float64")
    return value


def _json_loads(text):
    """Strict JSON: duplicate keys, NaN/Infinity and numbers beyond float64 are errors
    (ValueError), as is nesting deep enough to exhaust the parser."""
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates,
                          parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _read_header(f, size, where):
    """(entries, metadata, data_start, header): the header checked against the file's
    size. entries: [(name, numpy dtype, shape, begin, end)] sorted by offset, tiling the
    data; header: the parsed JSON less __metadata__."""
    if size < 8:
        raise ValueError(f"{where}: not a safetensors file (only {size} bytes)")
    (n,) = struct.unpack("<Q", f.read(8))
    if n < 2 or n > MAX_HEADER_BYTES:
        raise ValueError(f"{where}: not a safetensors file (declared header length {n} is "
                         f"outside [2, {MAX_HEADER_BYTES}])")
    if 8 + n > size:
        raise ValueError(f"{where}: truncated (the header declares {n} bytes, the file has "
                         f"{size - 8} after the length)")
    raw = f.read(n)
    if len(raw) != n:
        raise ValueError(f"{where}: truncated while reading the header")
    if raw[:1] != b"{":
        raise ValueError(f"{where}: not a safetensors file (the header is not a JSON object)")
    try:
        header = _json_loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{where}: __metadata__ must map strings to strings")
    entries = []
    for name, info in header.items():
        key = f"{where}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{key}: expected exactly dtype, shape and data_offsets")
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype_name not in _DTYPES:
            raise ValueError(f"{key}: unsupported dtype {dtype_name!r} "
                             f"(supported: {sorted(_DTYPES)})")
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(_is_int(d) and 0 <= d < 2**63 for d in shape)):
            raise ValueError(f"{key}: shape must be a list of at most {MAX_NDIM} "
                             f"non-negative int64s, got {reprlib.repr(shape)}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise ValueError(f"{key}: data_offsets must be [begin, end] with "
                             f"0 <= begin <= end, got {offsets!r}")
        dtype = np.dtype(_DTYPES[dtype_name])
        nbytes = math.prod(shape) * dtype.itemsize     # Python ints: no overflow
        if nbytes != offsets[1] - offsets[0]:
            raise ValueError(f"{key}: shape {shape} of {dtype_name} needs {nbytes} bytes, "
                             f"data_offsets {offsets} give {offsets[1] - offsets[0]}")
        entries.append((name, dtype, tuple(shape), offsets[0], offsets[1]))
    data_len = size - 8 - n
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            raise ValueError(f"{where}: tensor {name!r} starts at byte {begin} of the data, "
                             f"expected {position} (tensors must be contiguous and must not "
                             f"overlap)")
        if end > data_len:
            raise ValueError(f"{where}: truncated (tensor {name!r} ends at byte {end} of the "
                             f"data, the file holds {data_len})")
        position = end
    if position != data_len:
        raise ValueError(f"{where}: the data section has {data_len} bytes, the tensors "
                         f"cover {position} (truncated or trailing bytes)")
    return entries, metadata, 8 + n, header


def _read_tensors(f, entries, data_start, where, digest):
    """Read each tensor (all sizes already checked against the file) into a new array,
    feeding the bytes to `digest` in file order."""
    tensors = {}
    f.seek(data_start)
    for name, dtype, shape, begin, end in entries:
        arr = np.empty(shape, dtype)
        view = _raw(arr)
        if f.readinto(view) != arr.nbytes:
            raise ValueError(f"{where}: truncated while reading tensor {name!r}")
        if digest is not None:
            digest.update(view)
        tensors[name] = arr.astype(dtype.newbyteorder("="), copy=False)
    return tensors


class _Contents:
    """A checked safetensors file: header entries and metadata, tensors read on demand."""

    def __init__(self, path):
        self.where = os.fspath(path)
        self.file = open(path, "rb")
        try:
            size = os.fstat(self.file.fileno()).st_size
            self.entries, self.metadata, self.data_start, header = _read_header(
                self.file, size, self.where)
        except BaseException:
            self.file.close()
            raise
        self.shapes = {name: (dtype, shape) for name, dtype, shape, _, _ in self.entries}
        self._header = header

    def read(self):
        """{name: array}, verifying the checksum when the file carries one."""
        checksum = self.metadata.get(CHECKSUM_KEY)
        digest = None
        if checksum is not None:
            header = dict(self._header)
            header["__metadata__"] = {k: v for k, v in self.metadata.items()
                                      if k != CHECKSUM_KEY}
            digest = hashlib.sha256(_canonical(header))
        tensors = _read_tensors(self.file, self.entries, self.data_start, self.where, digest)
        if digest is not None and digest.hexdigest() != checksum:
            raise ValueError(f"{self.where}: checksum mismatch: the file is corrupted "
                             f"(a flipped bit or a partial overwrite)")
        return tensors

    def close(self):
        self.file.close()


def read_safetensors(path):
    """(tensors, metadata) of any safetensors file (e.g. one written by
    safetensors.torch.save_file): {name: numpy array}, {str: str}. The header is checked
    against the file's size before anything is allocated; a ValueError names the problem."""
    contents = _Contents(path)
    try:
        return contents.read(), dict(contents.metadata)
    finally:
        contents.close()


# --- save ------------------------------------------------------------------------------------

def _json(value, what):
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected JSON-serialisable values ({exc})") from None
    except RecursionError:
        raise ValueError(f"{what}: nested too deeply to write as JSON") from None


def _jsonable(value):
    """Tuples (betas) as lists, numpy scalars as Python numbers."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save(model, path, optimizer=None, extra=None):
    """Write `model` (and `optimizer`'s state, and `extra`, any JSON value) to `path` as one
    safetensors file, atomically. See the module docstring for the layout."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a cnet Sequential, got {type(model).__name__}")
    with model._calls.plain:    # not while another thread trains it: it would mix steps
        _save(model, path, optimizer, extra)


def _save(model, path, optimizer, extra):
    model._check_layers()
    import cnet
    layers = []
    for i, layer in enumerate(model.layers):
        name = type(layer).__name__
        if LAYERS.get(name) is not type(layer):
            raise TypeError(f"model[{i}]: {name} is not one of cnet's layers "
                            f"({sorted(LAYERS)}) and cannot be saved")
        entry = {"type": name, "config": layer.config()}
        if isinstance(layer, _layers.Dropout):
            entry["rng_state"] = [int(v) for v in layer.rng_state]
        layers.append(entry)
    arch = {"dtype": model.dtype.name, "training": bool(model.training), "layers": layers}
    tensors = dict(model._state_arrays())
    metadata = {"cnet.format_version": FORMAT_VERSION, "cnet.version": cnet.__version__,
                "cnet.model": _json(arch, "model")}
    if optimizer is not None:
        name = type(optimizer).__name__
        if OPTIMIZERS.get(name) is not type(optimizer):
            raise TypeError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {name}")
        if optimizer.flat_data is not model.flat_data:
            raise ValueError("optimizer: expected an optimizer over this model's parameters")
        state = optimizer.state_dict()
        groups = [{k: _jsonable(v) for k, v in g.items()} for g in state["param_groups"]]
        arrays = {k: v for k, v in state["state"].items() if isinstance(v, np.ndarray)}
        metadata["cnet.optimizer"] = _json({
            "type": name, "step": int(state["step"]), "param_groups": groups,
            "state": list(arrays),
            "numbers": {k: _jsonable(v) for k, v in state["state"].items() if k not in arrays}},
            "optimizer")
        for key, arr in arrays.items():
            tensors[OPTIMIZER_PREFIX + key] = arr
    for key, arr in tensors.items():   # load_state_dict rejects them: never write them
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"model: {key} holds NaN or inf; a model that has diverged "
                             f"cannot be saved")
    if extra is not None:
        metadata["cnet.extra"] = _json(extra, "extra")
    write_safetensors(path, tensors, metadata)


# --- load ------------------------------------------------------------------------------------

def _meta_json(contents, key, required=True):
    text = contents.metadata.get(key)
    if text is None:
        if required:
            raise ValueError(f"{contents.where}: not a cnet model file (no {key!r} in the "
                             f"safetensors metadata)")
        return None
    try:
        return _json_loads(text)
    except ValueError as exc:
        raise ValueError(f"{contents.where}: metadata {key!r} is not valid JSON "
                         f"({exc})") from None


def _kind(value):
    """The JSON kind of a value: bool, number, str, None, list (tuples too) or dict."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list of " + ",".join(sorted({_kind(v) for v in value}))
    return type(value).__name__


def _same_json(a, b):
    """Equal, with the same JSON kind (1 and 1.0 are the same, True and 1 are not)."""
    return _kind(a) == _kind(b) and a == b


def _build_layer(i, entry, where):
    key = f"{where}: layer {i}"
    if not isinstance(entry, dict) or not {"type", "config"} <= set(entry) \
            or not set(entry) <= {"type", "config", "rng_state"}:
        raise ValueError(f"{key}: expected {{'type', 'config'[, 'rng_state']}}, got {entry!r}")
    name, config = entry["type"], entry["config"]
    cls = LAYERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{key}: unknown layer type {name!r} (cnet's layers: {sorted(LAYERS)})")
    if not isinstance(config, dict):
        raise ValueError(f"{key}: config must be an object, got {config!r}")
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ValueError(f"{key}: {name} has no argument {unknown[0]!r}")
    try:
        layer = cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: invalid {name} config {config!r} ({exc})") from None
    rebuilt = layer.config()
    for arg, value in config.items():
        if not _same_json(rebuilt.get(arg), value):
            raise ValueError(f"{key}: invalid {name} config: {arg}={value!r}")
    if ("rng_state" in entry) != (cls is _layers.Dropout):
        raise ValueError(f"{key}: a Dropout layer needs an rng_state, no other layer has one")
    if "rng_state" in entry:
        state = entry["rng_state"]
        if not isinstance(state, list) or len(state) != 2 \
                or not all(_is_int(v) and 0 <= v < 2**64 for v in state):
            raise ValueError(f"{key}: invalid rng_state {state!r}")
    return layer


def _expected_tensors(layers, dtype):
    """({key: (dtype, shape)}, {parameter key: size}): the state dict a Sequential of
    `layers` has, and its parameters, without building it (Sequential.state_dict's keys)."""
    expected, params = {}, {}
    for i, layer in enumerate(layers):
        for name, shape in layer.param_shapes().items():
            expected[f"{i}.{name}"] = (dtype, tuple(shape))
            params[f"{i}.{name}"] = math.prod(shape)
        for name, shape in layer.buffer_shapes().items():
            expected[f"{i}.{name}"] = (dtype, tuple(shape))
        if getattr(layer, "track_running_stats", False):
            expected[f"{i}.num_batches_tracked"] = (np.dtype(np.int64), ())
    return expected, params


def _check_tensors(contents, expected, what):
    for key, (dtype, shape) in expected.items():
        if key not in contents.shapes:
            raise ValueError(f"{contents.where}: {what} tensor {key!r} is missing")
        got_dtype, got_shape = contents.shapes[key]
        if shape is not None and got_shape != shape:
            raise ValueError(f"{contents.where}: tensor {key!r} has shape {list(got_shape)}, "
                             f"the architecture needs {list(shape)}")
        if got_dtype.newbyteorder("=") != dtype:
            raise ValueError(f"{contents.where}: tensor {key!r} has dtype "
                             f"{_DTYPE_NAMES[got_dtype.newbyteorder('=')]}, expected "
                             f"{_DTYPE_NAMES[dtype]}")


def _parse_model(contents):
    where = contents.where
    version = contents.metadata.get("cnet.format_version")
    if version is None:
        raise ValueError(f"{where}: not a cnet model file (no 'cnet.format_version' in the "
                         f"safetensors metadata)")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where}: cnet file format version {version!r}, this cnet reads "
                         f"version {FORMAT_VERSION!r}")
    if CHECKSUM_KEY not in contents.metadata:
        raise ValueError(f"{where}: not a cnet model file (no {CHECKSUM_KEY!r} checksum)")
    arch = _meta_json(contents, "cnet.model")
    if not isinstance(arch, dict) or set(arch) != {"dtype", "training", "layers"}:
        raise ValueError(f"{where}: metadata 'cnet.model' must be an object with dtype, "
                         f"training and layers")
    if arch["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{where}: model dtype must be 'float32' or 'float64', "
                         f"got {arch['dtype']!r}")
    if not isinstance(arch["training"], bool):
        raise ValueError(f"{where}: model 'training' must be true or false")
    entries = arch["layers"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_LAYERS:
        raise ValueError(f"{where}: model layers must be a list of 1 to {MAX_LAYERS} layers")
    layers = [_build_layer(i, entry, where) for i, entry in enumerate(entries)]
    return arch, layers


def _parse_optimizer(contents, model_keys):
    """(class, step, groups, state array names, state numbers) of the optimizer in the
    file, or None."""
    where = contents.where
    spec = _meta_json(contents, "cnet.optimizer", required=False)
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"type", "step", "param_groups", "state",
                                                   "numbers"}:
        raise ValueError(f"{where}: metadata 'cnet.optimizer' must be an object with type, "
                         f"step, param_groups, state and numbers")
    cls = OPTIMIZERS.get(spec["type"]) if isinstance(spec["type"], str) else None
    if cls is None:
        raise ValueError(f"{where}: unknown optimizer type {spec['type']!r} "
                         f"(cnet's optimizers: {sorted(OPTIMIZERS)})")
    if not _is_int(spec["step"]) or not 0 <= spec["step"] <= _optim.MAX_STEP:
        raise ValueError(f"{where}: optimizer step must be an int in [0, 2**62], got "
                         f"{spec['step']!r}")
    groups, seen = spec["param_groups"], set()
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"{where}: optimizer param_groups must be a non-empty list")
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()
                if name != "params"}
    for i, group in enumerate(groups):
        key = f"{where}: optimizer param_groups[{i}]"
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"{key}: expected an object with params")
        missing = [k for k in defaults if k not in group]
        if missing:
            raise ValueError(f"{key}: missing hyper-parameter {missing[0]!r}")
        for k, default in defaults.items():   # (None: the optimizer's own check decides)
            if default is not None and _kind(group[k]) != _kind(default):
                raise ValueError(f"{key}: hyper-parameter {k!r} must be a {_kind(default)}, "
                                 f"got {group[k]!r}")
        names = group["params"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{key}: params must be a list of parameter names")
        for n in names:
            if n not in model_keys or n in seen:
                raise ValueError(f"{key}: {n!r} is not a parameter of the model, or appears "
                                 f"twice")
            seen.add(n)
        for k, v in defaults.items():   # betas: a tuple in memory, a list in JSON
            if isinstance(v, tuple) and isinstance(group[k], list):
                group[k] = tuple(group[k])
    state, numbers = spec["state"], spec["numbers"]
    if not isinstance(state, list) or not all(isinstance(s, str) for s in state) \
            or len(set(state)) != len(state):
        raise ValueError(f"{where}: optimizer state must be a list of distinct names")
    if not isinstance(numbers, dict) or set(numbers) & set(state) \
            or not all(_kind(v) == "number" for v in numbers.values()):
        raise ValueError(f"{where}: optimizer numbers must map names (other than the state "
                         f"arrays') to numbers")
    return cls, spec["step"], groups, state, numbers


def _build_optimizer(model, spec, tensors, where):
    cls, step, groups, state_names, numbers = spec
    params = dict(model.named_parameters())
    try:
        optimizer = cls([{**{k: v for k, v in g.items() if k != "params"},
                          "params": [params[n] for n in g["params"]]} for g in groups])
        optimizer.load_state_dict({
            "step": step, "param_groups": groups,
            "state": {**numbers,
                      **{name: tensors[OPTIMIZER_PREFIX + name] for name in state_names}}})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: invalid optimizer state ({exc})") from None
    return optimizer


def load(path, with_optimizer=False):
    """Rebuild the model saved in `path` by `save`: same layers, configs, dtype, weights,
    buffers, Dropout streams and train/eval mode.

    with_optimizer=False returns the Sequential. with_optimizer=True returns a Checkpoint
    (model, optimizer, extra): the optimizer rebuilt over the new model with its
    hyper-parameters, step count and state (None when the file holds none), and the
    `extra` value given to save (None when none was).

    A file that is not a whole, unmodified cnet model file raises ValueError naming the
    problem; nothing large is allocated before the header has been checked against the
    file's size and the architecture against the tensors."""
    contents = _Contents(path)
    try:
        where = contents.where
        arch, layers = _parse_model(contents)
        dtype = np.dtype(arch["dtype"])
        expected, params = _expected_tensors(layers, dtype)
        _check_tensors(contents, expected, "model")
        opt_spec = _parse_optimizer(contents, params)
        optimizer_keys = {}
        if opt_spec is not None:   # shapes: checked by the optimizer's load_state_dict
            optimizer_keys = {OPTIMIZER_PREFIX + n: (dtype, None) for n in opt_spec[3]}
            _check_tensors(contents, optimizer_keys, "optimizer")
        unexpected = sorted(set(contents.shapes) - set(expected) - set(optimizer_keys))
        if unexpected:
            raise ValueError(f"{where}: unexpected tensor {unexpected[0]!r} (not part of the "
                             f"architecture in the metadata)")
        extra = _meta_json(contents, "cnet.extra", required=False) if with_optimizer else None
        # Everything declared is now known to be consistent and within the file: read it.
        tensors = contents.read()
    finally:
        contents.close()
    try:
        model = Sequential(*layers, dtype=dtype, seed=0)
        model.load_state_dict({k: tensors[k] for k in expected})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the weights do not fit the architecture ({exc})") from None
    for layer, entry in zip(layers, arch["layers"]):
        if "rng_state" in entry:
            layer.rng_state[:] = np.array(entry["rng_state"], dtype=np.uint64)
    model.train(arch["training"])
    if not with_optimizer:
        return model
    optimizer = None if opt_spec is None else _build_optimizer(model, opt_spec, tensors, where)
    return Checkpoint(model, optimizer, extra)


# --- PyTorch -----------------------------------------------------------------------------------

def _torch_layer(module, i):
    import torch.nn as nn
    kind = type(module)
    if kind is nn.Linear:
        return _layers.Dense(module.in_features, module.out_features,
                             bias=module.bias is not None)
    if kind is nn.LeakyReLU:
        return _layers.LeakyReLU(module.negative_slope)
    if kind is nn.Softmax:
        if module.dim not in (None, 1, -1):
            raise TypeError(f"module[{i}]: Softmax(dim={module.dim}) is not supported "
                            f"(cnet's Softmax normalises the feature axis, dim=1 or -1)")
        return _layers.Softmax(-1 if module.dim is None else module.dim)
    if kind is nn.Dropout:
        return _layers.Dropout(module.p)
    if kind is nn.BatchNorm1d:
        return _layers.BatchNorm1d(module.num_features, module.eps, module.momentum,
                                   module.affine, module.track_running_stats)
    simple = {nn.ReLU: _layers.ReLU, nn.Sigmoid: _layers.Sigmoid, nn.Tanh: _layers.Tanh,
              nn.Identity: _layers.Identity}
    if kind in simple:
        return simple[kind]()
    raise TypeError(f"module[{i}]: {kind.__name__} has no cnet equivalent (supported: Linear, "
                    f"ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, Identity, Dropout, BatchNorm1d)")


def from_torch(module, seed=None):
    """The cnet Sequential equivalent to a torch.nn.Sequential (same layers, weights,
    buffers, dtype and train/eval mode). Unsupported modules raise TypeError. `seed` seeds
    the Dropout mask streams (torch's generator state cannot be carried over)."""
    import torch
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module: expected a torch.nn.Sequential, got {type(module).__name__}")
    layers = [_torch_layer(m, i) for i, m in enumerate(module)]
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    dtypes = {v.dtype for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if len(dtypes) > 1 or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
        raise TypeError(f"module: expected float32 or float64 parameters throughout, "
                        f"got {sorted(str(d) for d in dtypes)}")
    model = Sequential(*layers, dtype=dtypes.pop() if dtypes else "float32", seed=seed)
    model.load_state_dict(state)
    return model.train(module.training)


def to_torch(model):
    """The torch.nn.Sequential equivalent to a cnet Sequential (same weights, buffers, dtype
    and train/eval mode). Step has no torch module and raises TypeError."""
    import torch
    import torch.nn as nn
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a cnet Sequential, got {type(model).__name__}")
    modules = []
    for i, layer in enumerate(model.layers):
        c = layer.config()
        kind = type(layer)
        if kind is _layers.Dense:
            modules.append(nn.Linear(c["in_features"], c["out_features"], bias=c["bias"]))
        elif kind is _layers.LeakyReLU:
            modules.append(nn.LeakyReLU(c["negative_slope"]))
        elif kind is _layers.Softmax:
            modules.append(nn.Softmax(dim=c["dim"]))
        elif kind is _layers.Dropout:
            modules.append(nn.Dropout(c["p"]))
        elif kind is _layers.BatchNorm1d:
            modules.append(nn.BatchNorm1d(**c))
        elif kind in (_layers.ReLU, _layers.Sigmoid, _layers.Tanh, _layers.Identity):
            modules.append(getattr(nn, kind.__name__)())
        else:
            raise TypeError(f"model[{i}]: {kind.__name__} has no torch equivalent")
    net = nn.Sequential(*modules).to(getattr(torch, model.dtype.name))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return net.train(model.training)
