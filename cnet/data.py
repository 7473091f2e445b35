"""Data helpers: bundled and downloadable datasets, the user's own files, splits and batches.

- ``load_digits()`` returns the UCI handwritten digits bundled with cnet as ``(X, y)``.
- ``load_mnist()`` / ``load_fashion_mnist()`` read the standard gzip-compressed IDX files from a
  cache folder, downloading them on first use (see "Downloads" below).
- ``load_csv(path, label_column=-1)`` and ``load_npz(path)`` read the user's own data.
- ``train_test_split(X, y, ...)`` splits rows like scikit-learn's function of the same name,
  optionally stratified by class, but with ``seed=`` and exactly ``X`` and ``y`` (its
  docstring lists the differences).
- ``iterate_minibatches(X, y, batch_size)`` yields shuffled ``(X_batch, y_batch)`` pairs for a
  hand-written training loop (``Trainer`` gathers its own batches).

Randomness comes from ``seed``: an int, a ``numpy.random.Generator`` or None.

Downloads
---------
The cache folder of a dataset is ``path`` when given, else ``$CNET_DATA/<dataset>`` when the
environment variable ``CNET_DATA`` is set, else ``~/.cache/cnet/<dataset>`` (``<dataset>`` is
``mnist`` or ``fashion-mnist``). A file missing there is fetched with ``urllib`` from the
mirrors below, in order, into a temporary file in the same folder; its SHA-256 is checked and
only then is it renamed into place, so an interrupted or corrupted download never leaves a
file under the real name. Files already in the folder are used as they are (the IDX reader
still checks their structure), so files placed by hand work offline.

The mirrors are the ones torchvision (ossci-datasets) and TensorFlow (cvdf-datasets) download
MNIST from, and Zalando Research's own S3 bucket and GitHub repository for Fashion-MNIST. The
SHA-256 sums are the ones torchvision's prototype datasets list
(``torchvision/prototype/datasets/_builtin/mnist.py``); other projects publish the same sums,
some next to the MD5 sums of torchvision's ``MNIST``/``FashionMNIST`` classes. They were not
recomputed from the files here (this machine has no network).
"""
import csv
import functools
import gzip
import hashlib
import http.client
import math
import numbers
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from cnet._validation import as_generator

__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "load_csv", "load_npz",
           "train_test_split", "iterate_minibatches"]

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
_DATASETS = {  # name -> (title, mirrors, sha256 by file name)
    "mnist": ("MNIST", MNIST_MIRRORS, MNIST_SHA256),
    "fashion-mnist": ("Fashion-MNIST", FASHION_MNIST_MIRRORS, FASHION_MNIST_SHA256),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 and 1 dimensions


@functools.lru_cache(maxsize=None)
def _digits():
    source = resources.files("cnet").joinpath("datasets").joinpath("digits.csv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    X, y = table[:, :64].astype(np.float32), table[:, 64].copy()
    X.flags.writeable = y.flags.writeable = False
    return X, y


def load_digits():
    """The UCI optical handwritten digits (1,797 8x8 images; Alpaydin & Kaynak, 1998, CC BY 4.0).

    Returns ``(X, y)``: ``X`` float32 of shape (1797, 64) with pixel counts 0..16, ``y`` int64
    of shape (1797,) with labels 0..9. The arrays are fresh copies the caller may modify.
    """
    X, y = _digits()
    return X.copy(), y.copy()


# --- MNIST and Fashion-MNIST ----------------------------------------------------------------


def _cache_folder(dataset, path):
    if path is not None:
        return Path(path).expanduser()
    root = os.environ.get("CNET_DATA")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "cnet") / dataset


# What a failed download raises; local file-system errors (a full disk, no permission) propagate.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def _download(url, target, sha256):
    """Fetch ``url`` into ``target`` via a temporary file, renamed only if its SHA-256 matches."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(f"{url}: SHA-256 {digest.hexdigest()} does not match the expected "
                             f"{sha256}; the download was discarded")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fetch(dataset, folder, names, download):
    """Make sure ``names`` are in ``folder``, downloading the missing ones when allowed."""
    title, mirrors, sha256 = _DATASETS[dataset]
    missing = [name for name in names if not (folder / name).is_file()]

    def by_hand(names):
        files = "\n".join(f"  {name}   (from {mirrors[0]}{name})" for name in names)
        return (f"Place these files, as they are (gzip-compressed), in the folder {folder}:\n"
                f"{files}\n"
                f"or pass path= to load_{dataset.replace('-', '_')}, or set CNET_DATA to a folder "
                f"with a '{dataset}' subfolder.")

    if missing and not download:
        raise FileNotFoundError(f"{title}: files missing and download=False. {by_hand(missing)}")
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(missing):
        network_errors, checksum_errors = [], []
        for mirror in mirrors:
            try:
                _download(mirror + name, folder / name, sha256[name])
                break
            except ValueError as exc:
                checksum_errors.append(str(exc))
            except _NETWORK_ERRORS as exc:
                network_errors.append(f"{mirror + name}: {exc}")
        else:
            if checksum_errors:
                raise ValueError(f"{title}: {name} failed its SHA-256 check:\n  "
                                 + "\n  ".join(checksum_errors + network_errors)
                                 + "\n" + by_hand(missing[i:]))
            raise ConnectionError(f"{title}: could not download {name}; this machine seems to be "
                                  "offline (or the mirrors are unreachable):\n  "
                                  + "\n  ".join(network_errors) + "\n" + by_hand(missing[i:]))


def _read_idx(file, magic):
    """The array in a gzip-compressed IDX file of unsigned bytes, checked against ``magic``."""
    try:
        with gzip.open(file, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{file}: not a complete gzip file ({exc}); delete it (it is downloaded "
                         "again) or replace it") from exc
    found = int.from_bytes(data[:4], "big")
    if len(data) < 4 or found != magic:
        got = f"0x{found:08X}" if len(data) >= 4 else f"a file of {len(data)} bytes"
        raise ValueError(f"{file}: expected the IDX magic number 0x{magic:08X}, got {got}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{file}: truncated IDX header: {len(data)} bytes, expected {header}")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = header + math.prod(dims)
    if len(data) != size:
        what = "truncated" if len(data) < size else "longer than its header says"
        raise ValueError(f"{file}: {what}: dimensions {dims} need {size} bytes, the file has "
                         f"{len(data)}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _load_idx_dataset(dataset, path, kind, download, normalize):
    if kind not in ("train", "test"):
        raise ValueError(f"kind: expected 'train' or 'test', got {kind!r}")
    prefix = "train" if kind == "train" else "t10k"
    images_name, labels_name = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    folder = _cache_folder(dataset, path)
    _fetch(dataset, folder, (images_name, labels_name), download)
    images = _read_idx(folder / images_name, _IMAGES_MAGIC)
    labels = _read_idx(folder / labels_name, _LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{folder / images_name}: expected 28x28 images, got "
                         f"{images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {images_name} holds {len(images)} images but {labels_name} "
                         f"holds {len(labels)} labels")
    X = images.reshape(len(images), 28 * 28).astype(np.float32)
    if normalize:
        X /= np.float32(255)
    return X, labels.astype(np.int64)


def load_mnist(path=None, kind="train", download=True, normalize=False):
    """The MNIST handwritten digits (LeCun, Cortes and Burges): 60,000 train, 10,000 test images.

    Returns ``(X, y)``: ``X`` float32 of shape (n, 784), one flattened 28x28 image per row with
    pixel values 0..255 (divide by 255 yourself, or pass ``normalize=True`` for 0..1); ``y``
    int64 labels 0..9. ``kind`` is ``"train"`` or ``"test"``. The files are read from the cache
    folder (``path``, else ``$CNET_DATA/mnist``, else ``~/.cache/cnet/mnist``) and downloaded
    there with SHA-256 checks when missing, unless ``download=False`` (then a missing file is a
    FileNotFoundError). Without a network, the ConnectionError says which files to put where.
    """
    return _load_idx_dataset("mnist", path, kind, download, normalize)


def load_fashion_mnist(path=None, kind="train", download=True, normalize=False):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, MIT licence): Zalando article images.

    Same files, shapes and arguments as :func:`load_mnist`; the cache folder defaults to
    ``$CNET_DATA/fashion-mnist`` or ``~/.cache/cnet/fashion-mnist``. Labels 0..9 are T-shirt/top,
    trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot.
    """
    return _load_idx_dataset("fashion-mnist", path, kind, download, normalize)


# --- the user's own files ---------------------------------------------------------------------


def _open_text(path):
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first cell.
    if os.fspath(path).endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_infinity(cell):
    return cell.strip().lstrip("+-").lower() in ("inf", "infinity")


def _csv_problem(path, delimiter, has_header, text_column=None):
    """The first ragged row, non-numeric cell or number beyond float64 (which parses as an
    infinity) of a CSV file, named by line and column; text_column's cells may be any
    non-blank text."""
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        names = width = None
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if width is None:
                width = len(row)
                if has_header:
                    names = [cell.strip() for cell in row]
                    continue
            if len(row) != width:
                return f"line {reader.line_num} has {len(row)} fields, expected {width}"
            for j, cell in enumerate(row):
                column = f"column {j}" + (f" ({names[j]!r})" if names else "")
                if not _is_number(cell):
                    if j == text_column and cell.strip():
                        continue
                    hint = "" if has_header or reader.line_num > 1 else (
                        " (a header row is one without numbers; else pass header=True)")
                    return f"line {reader.line_num}, {column}: {cell!r} is not a number{hint}"
                if math.isinf(float(cell)) and not _is_infinity(cell):
                    return f"line {reader.line_num}, {column}: {cell.strip()} does not fit float64"
    return None


def _read_table(path, delimiter, header, text_column=None):
    """(float64 table, header names or None, labels or None) of a CSV file; problems named by
    line. A text_column (a name or index) that holds a cell other than a number comes back as
    str labels (its table column then holds their codes); one of numbers is read as usual."""
    with _open_text(path) as f:
        header_line, first = 0, ""
        for header_line, first in enumerate(f, 1):
            if first.strip():
                break
        if not first.strip():
            raise ValueError(f"{path}: the file is empty")
        first_row = [cell.strip() for cell in next(csv.reader([first], delimiter=delimiter))]
        has_header = not any(map(_is_number, first_row)) if header == "infer" else header
        names = first_row if has_header else None
        index, codes, converters = None, {}, None
        if text_column is not None:
            index = _column_index(path, text_column, names, len(first_row))

            def code(cell):     # each distinct label gets the next code; a blank one is an error
                cell = cell.strip()
                if not cell:
                    raise ValueError(f"blank label {cell!r}")
                return codes.setdefault(cell, len(codes))
            converters = {index: code}
        f.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "loadtxt: input contained no data")
                table = np.loadtxt(f, delimiter=delimiter, dtype=np.float64, ndmin=2,
                                   comments=None, quotechar='"', converters=converters,
                                   skiprows=header_line if has_header else 0)
        except ValueError as exc:
            problem = _csv_problem(path, delimiter, has_header, index) or exc
            raise ValueError(f"{path}: {problem}") from None
    labels = None
    if codes:
        labels = np.array(list(codes))[table[:, index].astype(np.intp)]
        if all(map(_is_number, codes)):   # numbers after all: the same values as without text
            table[:, index], labels = labels.astype(np.float64), None
    if table.size == 0:
        raise ValueError(f"{path}: no data rows")
    if np.isinf(table).any():       # "inf" as written, or a number beyond float64?
        problem = _csv_problem(path, delimiter, has_header, index)
        if problem:
            raise ValueError(f"{path}: {problem}")
    if names is not None and len(names) != table.shape[1]:  # rows agree, but not with the header
        raise ValueError(f"{path}: {_csv_problem(path, delimiter, has_header, index)}")
    return table, names, labels


def _column_index(path, label_column, names, n_columns):
    """The index of label_column, a column name or an index (negative from the end)."""
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(f"label_column: {label_column!r} is a column name, but {path} has no "
                             "header row; pass an index, or header=True")
        if label_column not in names:
            raise ValueError(f"label_column: no column named {label_column!r} in {path}; its "
                             f"columns are {names}")
        return names.index(label_column)
    if isinstance(label_column, numbers.Integral) and not isinstance(label_column, bool):
        if not -n_columns <= label_column < n_columns:
            raise ValueError(f"label_column: index {label_column} is out of range for "
                             f"{n_columns} columns")
        return int(label_column) % n_columns
    raise TypeError(f"label_column: expected a column name, an int or None, got "
                    f"{label_column!r}")


def load_csv(path, label_column=-1, delimiter=",", header="infer", dtype="float32",
             text_labels=False):
    """Read a numeric CSV file (gzip-compressed when its name ends in ``.gz``) as ``(X, y)``.

    ``label_column`` picks the label column by name (the file needs a header row) or by index
    (negative counts from the end); ``None`` reads every column into ``X`` and returns
    ``y=None``. ``header`` is True, False or ``"infer"``: the first row is a header when none of
    its cells is a number. ``X`` has ``dtype`` (float32 unless told); ``y`` is int64 when
    every label is an integer value (within int64), else ``dtype``; with ``text_labels=True``
    a label column holding any other (non-blank) text, such as class names, is read as an
    array of str instead of being an error. Blank lines are skipped. A
    ragged row, a cell that is not a number or a number beyond float64 (1e400; ``inf`` as
    written is read as infinity) raises ValueError naming its line and column, a number too
    large for ``dtype`` (1e39 in float32) one naming its row.
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected a floating-point dtype, got {dtype!r} ({exc})") from None
    if dtype.kind != "f":
        raise TypeError(f"dtype: expected a floating-point dtype, got {dtype}")
    if header not in ("infer", True, False):
        raise ValueError(f"header: expected True, False or 'infer', got {header!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter: expected a single character, got {delimiter!r}")
    try:
        table, names, labels = _read_table(path, delimiter, header,
                                           label_column if text_labels else None)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV text file ({type(exc).__name__}: "
                         f"{exc})") from None
    if label_column is None:
        return _as_dtype(path, table, dtype), None
    index = _column_index(path, label_column, names, table.shape[1])
    if table.shape[1] < 2:
        raise ValueError(f"{path}: only the label column; expected at least one feature column")
    X = _as_dtype(path, np.delete(table, index, axis=1), dtype)
    if labels is not None:
        return X, labels
    y = table[:, index]
    integral = bool(np.all(np.isfinite(y)) and np.all(y == np.trunc(y))
                    and np.all(np.abs(y) < 2.0**63))
    return X, (y.astype(np.int64) if integral else _as_dtype(path, y, dtype))


def _as_dtype(path, values, dtype):
    """values cast to dtype; a finite number too large for it is an error, not an infinity."""
    with np.errstate(over="ignore"):
        cast = values.astype(dtype)
    overflow = np.isinf(cast) & np.isfinite(values)
    if overflow.any():
        row = np.argwhere(overflow)[0]
        value = float(values[tuple(row)])
        raise ValueError(f"{path}: {value!r} in data row {row[0] + 1} does not fit {dtype} "
                         f"(largest {np.finfo(dtype).max:g})")
    return cast


def load_npz(path, x_key="X", y_key="y"):
    """Read ``(X, y)`` from a NumPy ``.npz`` archive (``np.savez``), with pickles refused.

    The arrays keep the dtype they were saved with. ``y_key=None`` returns ``y=None``. A key
    that is not in the archive raises ValueError listing the keys that are; so does an array
    whose header declares more data than the archive holds for it, before any allocation.
    """
    for argument, key in (("x_key", x_key), ("y_key", y_key)):
        if not isinstance(key, str) and not (key is None and argument == "y_key"):
            raise TypeError(f"{argument}: expected the name of an array (a str), got {key!r}")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    # The file is opened here, not by np.load, which leaves it open when a damaged archive
    # makes its NpzFile raise.
    with open(path, "rb") as file:
        X, y = _read_npz(path, file, x_key, y_key)
    for key, value in ((x_key, X), (y_key, y)):
        if key is not None and not isinstance(value, np.ndarray):   # NpzFile gives raw bytes
            raise ValueError(f"{path}: {key!r} is not a NumPy array (.npy) in the archive")
    if y is not None:
        try:
            X, y = _check_lengths(X, y)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return X, y


def _read_npz(path, file, x_key, y_key):
    """The arrays x_key and y_key (None: not read) of the open .npz `file`."""
    # OSError: a seek or read past the file that a damaged directory points to.
    unreadable = (ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                  OSError)
    try:
        archive = np.load(file, allow_pickle=False)
    except unreadable as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
    if isinstance(archive, np.ndarray):
        raise ValueError(f"{path}: expected an .npz archive (np.savez), got a single .npy array")
    with archive:
        for argument, key in (("x_key", x_key), ("y_key", y_key)):
            if key is not None and key not in archive.files:
                present = ", ".join(map(repr, archive.files)) or "no arrays"
                raise ValueError(f"{argument}: {path} has no array {key!r}; it holds {present}")
        try:
            for key in (x_key, y_key):
                if key is not None:
                    _check_member_size(path, archive.zip, key + ".npy")
            return archive[x_key], None if y_key is None else archive[y_key]
        except unreadable as exc:   # a damaged member, or object arrays (pickles)
            raise ValueError(f"{path}: cannot read its arrays ({exc})") from None


# Deflate expands at most 1032:1, so a member declaring more bytes than that is lying.
_MAX_DEFLATE_RATIO = 1032


def _check_member_size(path, zip_file, name):
    """Before NumPy allocates a member's array: the shape its header declares must match the
    bytes the member holds, and those the bytes the archive stores, so that a crafted file
    cannot make load_npz allocate more memory than its size accounts for."""
    if name not in zip_file.namelist():
        return                      # a member without .npy: NpzFile reports it as raw bytes
    info = zip_file.getinfo(name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{path}: array {name[:-4]!r} is compressed with zip method "
                         f"{info.compress_type}; expected stored or deflate (np.savez, "
                         f"np.savez_compressed)")
    stored_limit = info.compress_size * (_MAX_DEFLATE_RATIO
                                         if info.compress_type == zipfile.ZIP_DEFLATED else 1)
    with zip_file.open(name) as member:
        version = np.lib.format.read_magic(member)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"{path}: array {name[:-4]!r} is in .npy format {version}; "
                             "expected 1.0 or 2.0 (as np.savez writes)")
        shape, _, dtype = read_header(member)
        header = member.tell()
    declared = math.prod(shape) * dtype.itemsize
    if dtype.hasobject:
        return                      # refused later, without allocating, as a pickle
    if header + declared != info.file_size or info.file_size > stored_limit + 1024:
        raise ValueError(f"{path}: array {name[:-4]!r} declares shape {shape} of {dtype} "
                         f"({declared} bytes) but the archive holds {info.file_size} bytes "
                         f"for it ({info.compress_size} stored)")


def _check_lengths(X, y):
    X, y = _rows("X", X), _rows("y", y)
    if len(X) != len(y):
        raise ValueError(f"X and y: expected the same number of rows, got X with {len(X)} "
                         f"and y with {len(y)}")
    return X, y


def _as_array(name, values):
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:   # e.g. ragged nested lists
        raise TypeError(f"{name}: expected an array ({exc})") from None


def _rows(name, values):
    arr = _as_array(name, values)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array with one row per sample, got "
                         f"{values!r:.60}")
    return arr


def _count(name, size, n, rounding):
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"{name}: expected a float in (0, 1), an int or None, got {size!r}")
    if isinstance(size, numbers.Integral):
        return int(size)
    if 0.0 < size < 1.0:
        return rounding(float(size) * n)
    raise ValueError(f"{name}: expected a float in (0, 1), an int or None, got {size!r}")


def _split_sizes(test_size, train_size, n):
    """(n_test, the names of the sizes given), the rows counted as scikit-learn does: a test
    fraction rounds up, a train fraction down, a size left None is the rest of the rows."""
    if test_size is None and train_size is None:
        test_size = 0.25
    given = {name: size for name, size in (("test_size", test_size), ("train_size", train_size))
             if size is not None}
    names = " and ".join(given)
    n_test = n_train = None
    if test_size is not None:
        n_test = _count("test_size", test_size, n, math.ceil)
    if train_size is not None:
        n_train = _count("train_size", train_size, n, math.floor)
    if n_test is None:
        n_test = n - n_train
    elif n_train is None:
        n_train = n - n_test
    elif n_test + n_train != n:
        raise ValueError(f"{names}: {test_size!r} and {train_size!r} give {n_test} test and "
                         f"{n_train} train rows out of {n}; they must add up to all the rows "
                         f"(leaving rows out, as scikit-learn can, is not supported)")
    if min(n_test, n_train) < 1:
        sizes = " and ".join(repr(size) for size in given.values())
        raise ValueError(f"{names}: {sizes} {'gives' if len(given) == 1 else 'give'} {n_test} "
                         f"test and {n_train} train rows out of {n}; both sets must be "
                         f"non-empty")
    return n_test, names


def _stratified_test_indices(labels, n_test, rng, names):
    """Test indices drawn per class: each class gets floor or ceil of its proportional share."""
    try:
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True,
                                             axis=0 if labels.ndim == 2 else None)
    except TypeError as exc:   # values that do not compare, e.g. None and ints
        raise TypeError(f"stratify: expected labels that can be sorted ({exc})") from None
    if counts.min() < 2:
        raise ValueError(f"stratify: the least populated class ({classes[counts.argmin()]!r}) "
                         "has only 1 member, which is too few; every class needs at least 2")
    n_train = len(labels) - n_test
    if min(n_test, n_train) < len(classes):
        raise ValueError(f"{names}: expected at least one test and one train row per class "
                         f"of stratify ({len(classes)} classes), got {n_test} test and "
                         f"{n_train} train rows")
    share = n_test * counts / counts.sum()
    take = np.floor(share).astype(np.int64)
    # Largest remainders get the leftover rows; random tie-breaking keeps classes on equal footing.
    order = np.lexsort((rng.random(len(classes)), -(share - take)))
    take[order[: n_test - take.sum()]] += 1
    return np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[:k]
                           for c, k in enumerate(take)])


def train_test_split(X, y, test_size=None, seed=None, stratify=None, shuffle=True, *,
                     train_size=None):
    """Split rows into ``X_train, X_test, y_train, y_test`` (scikit-learn's order).

    ``test_size`` and ``train_size`` are fractions in (0, 1) or row counts, as in
    scikit-learn: a test fraction is rounded up, a train fraction down, and a size left
    None is the rest of the rows (with both None, ``test_size=0.25``). ``stratify``
    (usually ``y``; class labels, or rows of shape (n, k) such as one-hot labels, each
    distinct row a class) keeps each class's proportion in both parts, to within a row;
    it needs ``shuffle=True`` and test and train sets of at least one row per class.
    Without shuffling the first rows are the training set and the last the test set.

    Where it differs from ``sklearn.model_selection.train_test_split``:

    - it splits exactly two arrays, ``X`` and ``y`` (not any number of them), converts
      them with NumPy (no sparse matrices) and returns NumPy arrays (pandas frames and
      lists come back as arrays);
    - randomness comes from ``seed`` (None, an int or a ``numpy.random.Generator``, used
      as it is), not ``random_state``; the draws differ from scikit-learn's, so the same
      number does not select the same rows;
    - given both ``test_size`` and ``train_size``, they must add up to all the rows
      (scikit-learn can leave the remaining rows out of both sets);
    - ``test_size``, ``seed``, ``stratify`` and ``shuffle`` may also be given by position,
      in that order (scikit-learn takes every size and option by name only).
    """
    X, y = _check_lengths(X, y)
    n = len(X)
    n_test, names = _split_sizes(test_size, train_size, n)
    if not shuffle:
        if stratify is not None:
            raise ValueError("stratify: stratified splitting requires shuffle=True")
        return X[: n - n_test], X[n - n_test:], y[: n - n_test], y[n - n_test:]
    rng = as_generator("seed", seed)
    if stratify is None:
        perm = rng.permutation(n)
        test, train = perm[:n_test], perm[n_test:]
    else:
        labels = np.asarray(stratify)
        if labels.ndim not in (1, 2) or len(labels) != n:
            raise ValueError(f"stratify: expected {n} labels (one per row of X) or {n} "
                             f"one-hot rows, got shape {labels.shape}")
        test = rng.permutation(_stratified_test_indices(labels, n_test, rng, names))
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        train = rng.permutation(np.flatnonzero(mask))
    return X[train], X[test], y[train], y[test]


def iterate_minibatches(X, y, batch_size, shuffle=True, seed=None):
    """Yield ``(X_batch, y_batch)`` covering every row once, in a seeded random order.

    ``batch_size=None`` yields the whole set as one batch; the last batch may be smaller.
    Shuffled batches are copies; with ``shuffle=False`` they are views in row order.
    Arguments are checked when called, before the first batch is requested.
    """
    X, y = _check_lengths(X, y)
    n = len(X)
    if batch_size is None:
        batch_size = max(n, 1)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size: expected a positive int or None, got {batch_size!r}")
    elif batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int or None, got {batch_size}")
    order = as_generator("seed", seed).permutation(n) if shuffle else None

    def batches():
        for start in range(0, n, batch_size):
            if order is None:
                yield X[start:start + batch_size], y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield X[idx], y[idx]

    return batches()
