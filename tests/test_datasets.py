"""cnet.data: MNIST / Fashion-MNIST from IDX files (no network), load_csv and load_npz."""
import gzip
import hashlib
import urllib.error
import urllib.request

import numpy as np
import pytest

from cnet import data
from cnet.data import load_csv, load_fashion_mnist, load_mnist, load_npz

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
SHA256 = {"mnist": data.MNIST_SHA256, "fashion-mnist": data.FASHION_MNIST_SHA256}
MIRRORS = {"mnist": data.MNIST_MIRRORS, "fashion-mnist": data.FASHION_MNIST_MIRRORS}
NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


# --- writing small IDX files ---------------------------------------------------------------


def idx_bytes(array, magic=None):
    """The uncompressed IDX encoding of a uint8 array (magic 0x08NN with NN = ndim by default)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.tobytes()


def write_gz(path, raw):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw))
    return path


def sample(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_set(folder, kind="train", n=3, seed=0):
    images, labels = sample(n, seed)
    write_gz(folder / NAMES[kind][0], idx_bytes(images))
    write_gz(folder / NAMES[kind][1], idx_bytes(labels))
    return images, labels


@pytest.fixture
def no_network(monkeypatch):
    """urlopen that fails the test if it is called at all."""
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


@pytest.fixture
def serve(monkeypatch):
    """urlopen serving bytes from local files: serve.files[url] = path. Records each request."""

    class Server:
        def __init__(self):
            self.files, self.requests = {}, []

        def urlopen(self, url, *args, **kwargs):
            self.requests.append(url)
            if url not in self.files:
                raise urllib.error.URLError(f"no route to {url}")
            return open(self.files[url], "rb")

    server = Server()
    monkeypatch.setattr(urllib.request, "urlopen", server.urlopen)
    return server


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- reading from the cache folder -----------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("kind", ["train", "test"])
@pytest.mark.parametrize("download", [False, True])
def test_reads_idx_files_from_the_cache_folder(tmp_path, no_network, dataset, kind, download):
    images, labels = write_set(tmp_path, kind, n=4, seed=1)
    X, y = LOADERS[dataset](path=tmp_path, kind=kind, download=download)
    assert X.shape == (4, 784) and X.dtype == np.float32
    assert y.shape == (4,) and y.dtype == np.int64
    assert np.array_equal(X, images.reshape(4, 784).astype(np.float32))
    assert np.array_equal(y, labels)
    assert X.max() > 1  # raw pixel values, not normalised
    assert no_network == []  # files present: nothing downloaded


def test_train_and_test_come_from_their_own_files(tmp_path, no_network):
    train_images, _ = write_set(tmp_path, "train", n=3, seed=1)
    test_images, _ = write_set(tmp_path, "test", n=2, seed=2)
    assert np.array_equal(load_mnist(tmp_path, "train")[0], train_images.reshape(3, -1))
    assert np.array_equal(load_mnist(tmp_path, "test")[0], test_images.reshape(2, -1))


def test_normalize_divides_by_255(tmp_path, no_network):
    images, _ = write_set(tmp_path)
    X, _ = load_mnist(tmp_path, normalize=True)
    assert X.dtype == np.float32
    assert np.allclose(X, images.reshape(3, -1) / 255.0, atol=1e-7)
    assert 0.0 <= X.min() and X.max() <= 1.0


def test_returned_arrays_are_writable(tmp_path, no_network):
    write_set(tmp_path)
    X, y = load_fashion_mnist(tmp_path)
    X[0, 0] = -1.0
    y[0] = -1
    assert X[0, 0] == -1.0 and y[0] == -1


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_cache_folder_from_cnet_data(tmp_path, monkeypatch, no_network, dataset):
    images, _ = write_set(tmp_path / dataset)
    monkeypatch.setenv("CNET_DATA", str(tmp_path))
    X, _ = LOADERS[dataset](download=False)
    assert np.array_equal(X, images.reshape(3, -1))


def test_default_cache_folder_is_under_home(tmp_path, monkeypatch, no_network):
    monkeypatch.delenv("CNET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    images, _ = write_set(tmp_path / ".cache" / "cnet" / "fashion-mnist")
    X, _ = load_fashion_mnist(download=False)
    assert np.array_equal(X, images.reshape(3, -1))
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_mnist(download=False)  # MNIST has its own folder, still empty


def test_path_overrides_cnet_data(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("CNET_DATA", str(tmp_path / "elsewhere"))
    images, _ = write_set(tmp_path / "mine")
    assert np.array_equal(load_mnist(tmp_path / "mine")[0], images.reshape(3, -1))


def test_missing_files_without_download_say_what_to_place_where(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, "test", download=False)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train-images" not in message
    assert no_network == []


def test_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match=r"kind: expected 'train' or 'test', got 'validation'"):
        load_mnist(tmp_path, kind="validation")


# --- downloading (urlopen replaced by a local file server) -------------------------------------


def upstream(tmp_path, dataset, monkeypatch, kind="train"):
    """Files a mirror would serve, with the checksum table pointed at their SHA-256."""
    images, labels = write_set(tmp_path / "upstream", kind, seed=5)
    for name in NAMES[kind]:
        digest = hashlib.sha256((tmp_path / "upstream" / name).read_bytes()).hexdigest()
        monkeypatch.setitem(SHA256[dataset], name, digest)
    return images, labels


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_download_verifies_and_caches(tmp_path, monkeypatch, serve, dataset):
    images, labels = upstream(tmp_path, dataset, monkeypatch)
    first = MIRRORS[dataset][0]
    for name in NAMES["train"]:
        serve.files[first + name] = tmp_path / "upstream" / name
    cache = tmp_path / "cache"
    X, y = LOADERS[dataset](path=cache)
    assert np.array_equal(X, images.reshape(3, -1)) and np.array_equal(y, labels)
    assert serve.requests == [first + name for name in NAMES["train"]]
    assert leftovers(cache) == sorted(NAMES["train"])  # no temporary files left behind
    for name in NAMES["train"]:
        assert (cache / name).read_bytes() == (tmp_path / "upstream" / name).read_bytes()
    serve.requests.clear()
    LOADERS[dataset](path=cache)
    assert serve.requests == []  # the second call reads the cache


def test_download_into_cnet_data(tmp_path, monkeypatch, serve):
    upstream(tmp_path, "mnist", monkeypatch, kind="test")
    for name in NAMES["test"]:
        serve.files[data.MNIST_MIRRORS[0] + name] = tmp_path / "upstream" / name
    monkeypatch.setenv("CNET_DATA", str(tmp_path / "root"))
    X, _ = load_mnist(kind="test")
    assert X.shape == (3, 784)
    assert leftovers(tmp_path / "root" / "mnist") == sorted(NAMES["test"])


def test_downloads_only_the_missing_file(tmp_path, monkeypatch, serve):
    upstream(tmp_path, "mnist", monkeypatch)
    cache = tmp_path / "cache"
    cache.mkdir()
    images_name, labels_name = NAMES["train"]
    (cache / images_name).write_bytes((tmp_path / "upstream" / images_name).read_bytes())
    serve.files[data.MNIST_MIRRORS[0] + labels_name] = tmp_path / "upstream" / labels_name
    load_mnist(cache)
    assert serve.requests == [data.MNIST_MIRRORS[0] + labels_name]


def corrupt_copy(source, target):
    raw = bytearray(source.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    return target


def test_corrupted_download_is_rejected_and_not_cached(tmp_path, monkeypatch, serve):
    upstream(tmp_path, "mnist", monkeypatch)
    images_name = NAMES["train"][0]
    bad = corrupt_copy(tmp_path / "upstream" / images_name, tmp_path / "bad.gz")
    for mirror in data.MNIST_MIRRORS:
        serve.files[mirror + images_name] = bad
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="SHA-256") as info:
        load_mnist(cache)
    assert images_name in str(info.value) and str(cache) in str(info.value)
    assert leftovers(cache) == []  # neither the bad file nor a temporary file stays
    assert len(serve.requests) == len(data.MNIST_MIRRORS)  # every mirror was tried


def test_corrupted_mirror_falls_back_to_the_next(tmp_path, monkeypatch, serve):
    images, _ = upstream(tmp_path, "fashion-mnist", monkeypatch)
    first, second = data.FASHION_MNIST_MIRRORS[:2]
    for name in NAMES["train"]:
        serve.files[first + name] = corrupt_copy(tmp_path / "upstream" / name, tmp_path / name)
        serve.files[second + name] = tmp_path / "upstream" / name
    cache = tmp_path / "cache"
    X, _ = load_fashion_mnist(cache)
    assert np.array_equal(X, images.reshape(3, -1))
    assert serve.requests[:2] == [first + NAMES["train"][0], second + NAMES["train"][0]]
    assert leftovers(cache) == sorted(NAMES["train"])


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_offline_error_says_which_files_go_where(tmp_path, monkeypatch, dataset):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError) as info:
        LOADERS[dataset](path=cache, kind="test")
    message = str(info.value)
    assert "offline" in message
    assert f"in the folder {cache}" in message
    for name in NAMES["test"]:
        assert name in message and MIRRORS[dataset][0] + name in message
    assert "Temporary failure in name resolution" in message
    assert leftovers(cache) == []


def test_connection_lost_mid_download_leaves_no_partial_file(tmp_path, monkeypatch):
    class Dropping:
        def __init__(self):
            self.sent = False

        def read(self, size=-1):
            if self.sent:
                raise ConnectionResetError("connection reset by peer")
            self.sent = True
            return b"\x1f\x8b partial"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: Dropping())
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError, match="reset by peer"):
        load_mnist(cache)
    assert leftovers(cache) == []


def test_checksum_table_covers_every_file():
    for table in (data.MNIST_SHA256, data.FASHION_MNIST_SHA256):
        assert set(table) == set(NAMES["train"] + NAMES["test"])
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in table.values())
    assert data.MNIST_SHA256["train-images-idx3-ubyte.gz"] != \
        data.FASHION_MNIST_SHA256["train-images-idx3-ubyte.gz"]


# --- IDX validation ------------------------------------------------------------------------


def test_truncated_images_file(tmp_path):
    images, labels = sample()
    write_gz(tmp_path / NAMES["train"][0], idx_bytes(images)[:-100])
    write_gz(tmp_path / NAMES["train"][1], idx_bytes(labels))
    with pytest.raises(ValueError, match=r"truncated: dimensions \(3, 28, 28\) need 2368 bytes, "
                                         r"the file has 2268"):
        load_mnist(tmp_path, download=False)


def test_truncated_header(tmp_path):
    write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][0], idx_bytes(sample()[0])[:10])
    with pytest.raises(ValueError, match="truncated IDX header: 10 bytes, expected 16"):
        load_mnist(tmp_path, download=False)


def test_extra_bytes_after_the_data(tmp_path):
    _, labels = write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][1], idx_bytes(labels) + b"\x00")
    with pytest.raises(ValueError, match="longer than its header says"):
        load_mnist(tmp_path, download=False)


def test_truncated_gzip_stream(tmp_path):
    write_set(tmp_path)
    path = tmp_path / NAMES["train"][0]
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="not a complete gzip file"):
        load_mnist(tmp_path, download=False)


def test_uncompressed_file_under_a_gz_name(tmp_path):
    images, _ = write_set(tmp_path)
    (tmp_path / NAMES["train"][0]).write_bytes(idx_bytes(images))
    with pytest.raises(ValueError, match="not a complete gzip file"):
        load_mnist(tmp_path, download=False)


def test_labels_file_in_place_of_images(tmp_path):
    _, labels = write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][0], idx_bytes(labels))
    with pytest.raises(ValueError, match="IDX magic number 0x00000803, got 0x00000801"):
        load_mnist(tmp_path, download=False)


def test_images_file_in_place_of_labels(tmp_path):
    images, _ = write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][1], idx_bytes(images))
    with pytest.raises(ValueError, match="IDX magic number 0x00000801, got 0x00000803"):
        load_mnist(tmp_path, download=False)


def test_bad_magic_in_a_random_file(tmp_path):
    write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][0], b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="got 0x504B0304"):
        load_mnist(tmp_path, download=False)


def test_image_and_label_counts_must_agree(tmp_path):
    images, labels = sample(3)
    write_gz(tmp_path / NAMES["train"][0], idx_bytes(images))
    write_gz(tmp_path / NAMES["train"][1], idx_bytes(labels[:2]))
    with pytest.raises(ValueError, match="holds 3 images but train-labels-idx1-ubyte.gz holds 2"):
        load_mnist(tmp_path, download=False)


def test_images_must_be_28_by_28(tmp_path):
    write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][0], idx_bytes(np.zeros((3, 8, 8), np.uint8)))
    with pytest.raises(ValueError, match="expected 28x28 images, got 8x8"):
        load_mnist(tmp_path, download=False)


def test_broken_cached_file_is_reported_not_redownloaded(tmp_path, no_network):
    write_set(tmp_path)
    write_gz(tmp_path / NAMES["train"][1], b"junk")
    with pytest.raises(ValueError, match="magic number"):
        load_mnist(tmp_path)  # download=True, but the file is there: it is read, not replaced
    assert no_network == []


# --- load_csv ------------------------------------------------------------------------------


def write_text(path, text):
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


IRIS_LIKE = "sepal,petal,species\n5.1,1.4,0\n4.9,1.5,1\n6.2,4.8,2\n"


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz"])
def test_csv_label_by_name(tmp_path, name):
    X, y = load_csv(write_text(tmp_path / name, IRIS_LIKE), label_column="species")
    assert X.dtype == np.float32 and X.shape == (3, 2)
    assert np.array_equal(X, np.array([[5.1, 1.4], [4.9, 1.5], [6.2, 4.8]], np.float32))
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]


def test_csv_label_by_name_in_the_middle(tmp_path):
    X, y = load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), label_column="petal")
    assert np.array_equal(X, np.array([[5.1, 0], [4.9, 1], [6.2, 2]], np.float32))
    assert y.dtype == np.float32 and np.allclose(y, [1.4, 1.5, 4.8])  # not integers: float


@pytest.mark.parametrize("label_column, expected",
                         [(0, [5, 4, 6]), (-3, [5, 4, 6]), (2, [0, 1, 2])])
def test_csv_label_by_index(tmp_path, label_column, expected):
    text = "5,1.4,0\n4,1.5,1\n6,4.8,2\n"
    X, y = load_csv(write_text(tmp_path / "d.csv", text), label_column=label_column)
    assert y.dtype == np.int64 and y.tolist() == expected
    assert X.shape == (3, 2)


@pytest.mark.parametrize("label_column", [None, -1])
def test_csv_value_too_large_for_the_dtype_is_an_error(tmp_path, label_column):
    path = write_text(tmp_path / "d.csv", "1,2,0\n3,1e300,1\n")
    with pytest.raises(ValueError, match=r"1e\+300 in data row 2 does not fit float32"):
        load_csv(path, label_column=label_column)
    X, _ = load_csv(path, label_column=label_column, dtype="float64")   # fits there
    assert X[1, 1] == 1e300


def test_csv_labels_beyond_int64_stay_floats(tmp_path):
    X, y = load_csv(write_text(tmp_path / "d.csv", "1,2,1e19\n3,4,1\n"), dtype="float64")
    assert y.dtype == np.float64 and y.tolist() == [1e19, 1.0]
    X, y = load_csv(write_text(tmp_path / "e.csv", "1,2,1e39\n3,4,1\n"), dtype="float64")
    assert y.tolist() == [1e39, 1.0]
    with pytest.raises(ValueError, match="does not fit float32"):
        load_csv(write_text(tmp_path / "f.csv", "1,2,1e39\n3,4,1\n"))


def test_csv_default_label_is_the_last_column_and_header_is_inferred(tmp_path):
    X, y = load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE))
    assert y.tolist() == [0, 1, 2] and X.shape == (3, 2)
    X, y = load_csv(write_text(tmp_path / "n.csv", "1,2,3\n4,5,6\n"))
    assert X.tolist() == [[1, 2], [4, 5]] and y.tolist() == [3, 6]  # numeric first row is data


def test_csv_byte_order_mark_is_not_part_of_the_first_cell(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark."""
    X, y = load_csv(write_text(tmp_path / "d.csv", "\ufeff1,2,0\n3,4,1\n5,6,0\n"))
    assert X.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 0]
    X, y = load_csv(write_text(tmp_path / "h.csv", "\ufeff" + IRIS_LIKE), label_column="sepal")
    assert np.allclose(y, [5.1, 4.9, 6.2])     # the column named 'sepal', found


def test_csv_first_row_with_a_missing_value_is_data_not_a_header(tmp_path):
    with pytest.raises(ValueError, match=r"line 1, column 1: '' is not a number \(a header row"):
        load_csv(write_text(tmp_path / "d.csv", "1,,0\n3,4,1\n5,6,0\n"))


@pytest.mark.parametrize("cell", ["1e400", "-2E999"])
def test_csv_number_beyond_float64_is_an_error_not_an_infinity(tmp_path, cell):
    for text, line in ((f"1,{cell},0\n3,4,1\n", 1), (f"x,z,y\n\n1,2,0\n3,4,{cell}\n", 4)):
        path = write_text(tmp_path / "d.csv", text)
        for dtype in ("float32", "float64"):
            with pytest.raises(ValueError, match=f"line {line}, column .*{cell} does not fit"):
                load_csv(path, dtype=dtype)


def test_csv_infinity_as_written_is_read(tmp_path):
    X, y = load_csv(write_text(tmp_path / "d.csv", "inf,-Infinity,1.5\n3,4,+inf\n"))
    assert X.tolist() == [[np.inf, -np.inf], [3, 4]] and y.tolist() == [1.5, np.inf]


def test_csv_header_true_takes_a_numeric_first_row_as_names(tmp_path):
    path = write_text(tmp_path / "d.csv", "10,20,30\n1,2,3\n4,5,6\n")
    X, y = load_csv(path, label_column="20", header=True)
    assert X.tolist() == [[1, 3], [4, 6]] and y.tolist() == [2, 5]
    X, _ = load_csv(path, header=False)
    assert X.shape == (3, 2)


def test_csv_header_false_with_text_first_row_names_the_cell(tmp_path):
    with pytest.raises(ValueError, match=r"line 1, column 0: 'sepal' is not a number"):
        load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), header=False)


def test_csv_other_delimiter_dtype_and_blank_lines(tmp_path):
    path = write_text(tmp_path / "d.tsv", "a;b;y\n\n0.5;1.5;-1\n\n2.5;3.5;1\n")
    X, y = load_csv(path, delimiter=";", dtype="float64")
    assert X.dtype == np.float64 and X.tolist() == [[0.5, 1.5], [2.5, 3.5]]
    assert y.dtype == np.int64 and y.tolist() == [-1, 1]


def test_csv_text_labels_keep_class_names_as_str(tmp_path):
    text = 'a,b,species\n1,2,setosa\n3,4, virginica\n5,6,"iris, other"\n'
    X, y = load_csv(write_text(tmp_path / "d.csv", text), text_labels=True)
    assert X.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert y.dtype.kind == "U" and y.tolist() == ["setosa", "virginica", "iris, other"]
    with pytest.raises(ValueError, match=r"line 2, column 2 \('species'\): 'setosa' is not a"):
        load_csv(tmp_path / "d.csv")        # without text_labels, as before
    for numeric in (IRIS_LIKE, "a,b,y\n1,2,0.5\n3,4,1e19\n"):   # numbers read as without it
        expected = load_csv(write_text(tmp_path / "n.csv", numeric))
        X, y = load_csv(tmp_path / "n.csv", text_labels=True)
        assert y.dtype == expected[1].dtype and y.tolist() == expected[1].tolist()
        assert X.tolist() == expected[0].tolist()


@pytest.mark.parametrize("text, message", [
    ("a,b,y\n1,2,yes\n3,4,\n", r"line 3, column 2 \('y'\): '' is not a number"),
    ("a,b,y\n1,2,yes\n3,four,no\n", r"line 3, column 1 \('b'\): 'four' is not a number"),
    ("a,b,y\n1,2,yes\n3,4\n", "line 3 has 2 fields, expected 3"),
])
def test_csv_text_labels_still_name_other_problems(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_csv(write_text(tmp_path / "d.csv", text), text_labels=True)


def test_csv_without_labels(tmp_path):
    X, y = load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), label_column=None)
    assert y is None and X.shape == (3, 3)


def test_csv_unknown_column_name_lists_the_columns(tmp_path):
    with pytest.raises(ValueError,
                       match=r"no column named 'label'.*\['sepal', 'petal', 'species'\]"):
        load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), label_column="label")


def test_csv_column_name_needs_a_header(tmp_path):
    with pytest.raises(ValueError, match="no header row"):
        load_csv(write_text(tmp_path / "d.csv", "1,2\n3,4\n"), label_column="y")


@pytest.mark.parametrize("label_column", [3, -4])
def test_csv_index_out_of_range(tmp_path, label_column):
    with pytest.raises(ValueError, match=f"index {label_column} is out of range for 3 columns"):
        load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), label_column=label_column)


@pytest.mark.parametrize("label_column", [1.0, True, ["species"]])
def test_csv_label_column_of_wrong_type(tmp_path, label_column):
    with pytest.raises(TypeError, match="label_column"):
        load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), label_column=label_column)


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz"])
def test_csv_ragged_row_names_the_line(tmp_path, name):
    path = write_text(tmp_path / name, "a,b,y\n1,2,0\n3,4,1\n5,6\n")
    with pytest.raises(ValueError, match="line 4 has 2 fields, expected 3"):
        load_csv(path)


def test_csv_header_wider_than_the_rows(tmp_path):
    with pytest.raises(ValueError, match="line 2 has 2 fields, expected 3"):
        load_csv(write_text(tmp_path / "d.csv", "a,b,y\n1,2\n3,4\n"))


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write_text(tmp_path / "d.csv", "a,b,y\n1,2,0\n3,four,1\n")
    with pytest.raises(ValueError, match=r"line 3, column 1 \('b'\): 'four' is not a number"):
        load_csv(path)


def test_csv_empty_cell_is_reported(tmp_path):
    with pytest.raises(ValueError, match=r"line 2, column 2 \('y'\): '' is not a number"):
        load_csv(write_text(tmp_path / "d.csv", "a,b,y\n1,2,\n"))


@pytest.mark.parametrize("text, message", [("", "empty"), ("\n\n", "empty"),
                                           ("a,b,y\n", "no data rows")])
def test_csv_without_data(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_csv(write_text(tmp_path / "d.csv", text))


def test_csv_rejects_integer_dtype(tmp_path):
    with pytest.raises(TypeError, match="dtype: expected a floating-point dtype, got int64"):
        load_csv(write_text(tmp_path / "d.csv", IRIS_LIKE), dtype="int64")


def test_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "absent.csv")


# --- load_npz ------------------------------------------------------------------------------


def test_npz_round_trip_keeps_values_and_dtypes(tmp_path):
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0], np.int64)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = load_npz(tmp_path / "d.npz")
    assert X2.dtype == np.float32 and y2.dtype == np.int64
    assert np.array_equal(X2, X) and np.array_equal(y2, y)


def test_npz_custom_keys_and_compressed(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", features=np.ones((2, 4)), target=np.array([1.5, 2.5]))
    X, y = load_npz(tmp_path / "d.npz", x_key="features", y_key="target")
    assert X.shape == (2, 4) and y.tolist() == [1.5, 2.5]
    X, y = load_npz(tmp_path / "d.npz", x_key="features", y_key=None)
    assert y is None and X.shape == (2, 4)


@pytest.mark.parametrize("bad", [3, None, object()])
def test_npz_path_must_be_a_path(bad):
    """An int would be taken as a file descriptor (and closed), an open file is not what the
    function reads: both are named as the wrong argument."""
    with pytest.raises(TypeError, match="path: expected a file path"):
        load_npz(bad)


def test_npz_missing_key_lists_the_keys_present(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((2, 4)), labels=np.zeros(2))
    with pytest.raises(ValueError, match=r"x_key: .* no array 'X'; it holds 'features', 'labels'"):
        load_npz(tmp_path / "d.npz")
    with pytest.raises(ValueError, match=r"y_key: .* no array 'y'; it holds 'features', 'labels'"):
        load_npz(tmp_path / "d.npz", x_key="features")


def test_npz_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_npz(tmp_path / "d.npz")


def test_npz_rejects_a_plain_npy_file(tmp_path):
    np.save(tmp_path / "d.npy", np.ones(3))
    with pytest.raises(ValueError, match=r"expected an \.npz archive"):
        load_npz(tmp_path / "d.npy")


def test_npz_length_mismatch(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match="X with 4 and y with 3"):
        load_npz(tmp_path / "d.npz")


def test_package_exports():
    for name in ("load_mnist", "load_fashion_mnist", "load_csv", "load_npz"):
        assert name in data.__all__ and callable(getattr(data, name))
    for mirror in data.MNIST_MIRRORS + data.FASHION_MNIST_MIRRORS:
        assert mirror.startswith(("https://", "http://")) and mirror.endswith("/")


def _npz_with_header(path, shape, compress):
    """An .npz whose X member declares `shape` (float64) but holds 8 bytes of data."""
    import io
    import zipfile
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": shape})
    buffer.write(np.zeros(1).tobytes())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("X.npy", buffer.getvalue())
        with z.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(1))
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("shape", [(10**12,), (2**31, 2**31), (2,)])
def test_npz_member_declaring_more_than_it_holds_is_refused_before_allocating(
        tmp_path, shape, compress):
    path = _npz_with_header(tmp_path / "d.npz", shape, compress)
    with pytest.raises(ValueError, match=r"declares shape .* but the archive holds"):
        load_npz(path)


def test_npz_member_whose_size_fits_its_header_still_loads(tmp_path):
    path = _npz_with_header(tmp_path / "d.npz", (1,), compress=True)
    X, y = load_npz(path)
    assert X.tolist() == [0.0] and y.tolist() == [0.0]


def test_npz_member_compressed_another_way_is_refused_by_name(tmp_path):
    import zipfile
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((2, 3)), y=np.zeros(2))
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "b.npz", "w",
                                                        zipfile.ZIP_BZIP2) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    with pytest.raises(ValueError, match="compressed with zip method 12; expected stored or "
                                         "deflate"):
        load_npz(tmp_path / "b.npz")


def test_npz_whose_directory_points_past_the_file_is_a_value_error(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", X=np.zeros((100, 2)), y=np.arange(100))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 19] ^= 0xFF                   # the top byte of the central directory's offset
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="bad.npz"):
        load_npz(tmp_path / "bad.npz")
