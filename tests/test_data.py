"""cnet.data: the bundled digits, train_test_split and iterate_minibatches."""
import math

import numpy as np
import pytest

from cnet.data import iterate_minibatches, load_digits, train_test_split


def indexed(n, n_classes=3):
    """X whose first column is the row index (so rows can be tracked by content), and labels."""
    X = np.column_stack([np.arange(n), np.arange(n) * 10.0])
    y = np.arange(n) % n_classes
    return X, y


# --- load_digits ------------------------------------------------------------------------


def test_load_digits_shapes_dtypes_and_range():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16
    assert np.array_equal(X, np.round(X))  # pixel counts are integers
    assert np.array_equal(np.unique(y), np.arange(10))


def test_load_digits_first_row_matches_file():
    X, y = load_digits()
    assert X[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]
    assert y[0] == 0 and y[1] == 1


def test_load_digits_returns_independent_copies():
    X1, y1 = load_digits()
    X1[:] = -1
    y1[:] = -1
    X2, y2 = load_digits()
    assert X2.min() == 0 and y2.min() == 0
    assert not np.shares_memory(X1, X2) and not np.shares_memory(y1, y2)
    assert X2.flags.writeable and y2.flags.writeable


# --- train_test_split ---------------------------------------------------------------------


@pytest.mark.parametrize("n, test_size, n_test", [
    (100, 0.25, 25), (10, 0.25, 3), (1797, 0.2, 360), (7, 0.5, 4), (100, 30, 30), (5, 1, 1),
])
def test_split_sizes(n, test_size, n_test):
    X, y = indexed(n)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, seed=0)
    assert len(X_test) == len(y_test) == n_test
    assert len(X_train) == len(y_train) == n - n_test
    assert X_train.shape[1:] == X.shape[1:]


@pytest.mark.parametrize("sizes", [{}, {"test_size": None}, {"test_size": 0.33},
                                   {"test_size": 4}, {"train_size": 0.66}, {"train_size": 7},
                                   {"train_size": 0.75, "test_size": None},
                                   {"test_size": 0.2, "train_size": 0.8},
                                   {"test_size": 0.25, "train_size": 0.75}])
@pytest.mark.parametrize("n", [10, 13])
def test_split_sizes_as_sklearn(sizes, n):
    """The row counts of scikit-learn's train_test_split: a test fraction rounds up, a train
    fraction down, a size left None is the rest, and 0.25 is the test size by default."""
    sklearn_split = pytest.importorskip("sklearn.model_selection").train_test_split
    X, y = indexed(n, n_classes=2)
    _, X_test, _, _ = sklearn_split(X, y, random_state=0, **sizes)
    for stratify in (None, y):
        X_train, X_test2, _, _ = train_test_split(X, y, seed=0, stratify=stratify, **sizes)
        assert (len(X_train), len(X_test2)) == (n - len(X_test), len(X_test))


def test_split_with_train_size_only_without_shuffle():
    X, y = indexed(10)
    X_train, X_test, _, _ = train_test_split(X, y, shuffle=False, train_size=0.75)
    assert X_train[:, 0].tolist() == list(range(7)) and X_test[:, 0].tolist() == [7, 8, 9]


@pytest.mark.parametrize("sizes, error, match", [
    ({"train_size": 10}, ValueError, r"^train_size: 10 gives 0 test and 10 train rows out of 10"),
    ({"train_size": 0.05}, ValueError, r"^train_size: 0.05 gives 10 test and 0 train rows"),
    ({"train_size": 1.0}, ValueError, r"^train_size: expected a float in \(0, 1\), an int"),
    ({"train_size": "0.5"}, TypeError, r"^train_size: expected a float in \(0, 1\), an int"),
    ({"test_size": 0.2, "train_size": 0.5}, ValueError,
     r"^test_size and train_size: 0.2 and 0.5 give 2 test and 5 train rows out of 10; they "
     r"must add up to all the rows"),
    ({"test_size": 0, "train_size": 10}, ValueError,
     r"^test_size and train_size: 0 and 10 give 0 test and 10 train rows"),
])
def test_split_rejects_bad_train_size(sizes, error, match):
    X, y = indexed(10)
    with pytest.raises(error, match=match):
        train_test_split(X, y, **sizes)


def test_stratified_split_names_train_size_when_it_sets_the_sizes():
    X, y = indexed(10)
    with pytest.raises(ValueError, match=r"^train_size: expected at least one test and one "
                                         r"train row per class of stratify \(3 classes\), "
                                         r"got 2 test and 8 train rows"):
        train_test_split(X, y, train_size=8, stratify=y)


@pytest.mark.parametrize("stratify", [False, True])
def test_split_is_disjoint_complete_and_rows_stay_paired(stratify):
    X, y = indexed(50)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, seed=1, stratify=y if stratify else None)
    ids = np.concatenate([X_train[:, 0], X_test[:, 0]]).astype(int)
    assert np.array_equal(np.sort(ids), np.arange(50))  # every row exactly once
    assert np.array_equal(X_train[:, 1], X_train[:, 0] * 10)  # rows kept whole
    assert np.array_equal(y_train, X_train[:, 0].astype(int) % 3)  # labels follow their rows
    assert np.array_equal(y_test, X_test[:, 0].astype(int) % 3)


@pytest.mark.parametrize("stratify", [False, True])
def test_split_shuffles(stratify):
    X, y = indexed(100)
    X_train, X_test, _, _ = train_test_split(X, y, seed=0, stratify=y if stratify else None)
    assert not np.array_equal(X_test[:, 0], np.arange(75, 100))
    assert not np.all(np.diff(X_train[:, 0]) > 0)


def test_split_without_shuffle_takes_the_last_rows_as_test():
    X, y = indexed(10)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=3, shuffle=False)
    assert X_train[:, 0].tolist() == list(range(7)) and X_test[:, 0].tolist() == [7, 8, 9]
    assert y_test.tolist() == [7 % 3, 8 % 3, 9 % 3]


@pytest.mark.parametrize("stratify", [False, True])
def test_split_is_reproducible_with_a_seed(stratify):
    X, y = indexed(60)
    s = y if stratify else None
    a = train_test_split(X, y, seed=42, stratify=s)
    b = train_test_split(X, y, seed=42, stratify=s)
    c = train_test_split(X, y, seed=43, stratify=s)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[1], c[1])


def test_split_accepts_a_generator():
    X, y = indexed(40)
    a = train_test_split(X, y, seed=np.random.default_rng(5))
    b = train_test_split(X, y, seed=np.random.default_rng(5))
    assert np.array_equal(a[1], b[1])
    rng = np.random.default_rng(5)
    first, second = train_test_split(X, y, seed=rng), train_test_split(X, y, seed=rng)
    assert not np.array_equal(first[1], second[1])  # the generator advances


@pytest.mark.parametrize("test_size", [0.25, 0.1, 0.5, 0.33, 10, 45])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratify_keeps_class_proportions_within_one(test_size, seed):
    X, y = load_digits()
    X, y = X[:300], y[:300]
    _, _, y_train, y_test = train_test_split(X, y, test_size=test_size, seed=seed, stratify=y)
    n_test = test_size if isinstance(test_size, int) else math.ceil(test_size * len(y))
    assert len(y_test) == n_test and len(y_train) == len(y) - n_test
    for c in range(10):
        share = n_test * np.sum(y == c) / len(y)
        assert abs(np.sum(y_test == c) - share) < 1
        assert np.sum(y_test == c) + np.sum(y_train == c) == np.sum(y == c)


def test_stratify_on_unbalanced_labels():
    X, y = indexed(40)
    labels = np.array([0] * 30 + [1] * 8 + [2] * 2)
    _, X_test, _, _ = train_test_split(X, y, test_size=10, seed=3, stratify=labels)
    test_labels = labels[X_test[:, 0].astype(int)]
    # shares 7.5, 2 and 0.5: the leftover row goes to class 0 or class 2
    assert np.bincount(test_labels, minlength=3).tolist() in ([8, 2, 0], [7, 2, 1])


def test_stratify_accepts_one_hot_rows():
    X, y = indexed(12)
    _, _, _, y_test = train_test_split(X, y, test_size=6, seed=0, stratify=np.eye(3)[y])
    assert np.bincount(y_test, minlength=3).tolist() == [2, 2, 2]


def test_split_rejects_length_mismatch():
    with pytest.raises(ValueError, match=r"X and y.*X with 10 and y with 9"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, 1.5, 0, 10, 11, -1, 0.999])
def test_split_rejects_bad_test_size(test_size):
    X, y = indexed(10)
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(X, y, test_size=test_size)


@pytest.mark.parametrize("test_size", ["0.2", True])
def test_split_rejects_test_size_of_wrong_type(test_size):
    X, y = indexed(10)
    with pytest.raises(TypeError, match="test_size"):
        train_test_split(X, y, test_size=test_size)


def test_split_rejects_stratify_length_mismatch():
    X, y = indexed(10)
    with pytest.raises(ValueError, match=r"stratify: expected 10 labels"):
        train_test_split(X, y, stratify=y[:9])


def test_split_rejects_a_class_with_a_single_member():
    X, y = indexed(10)
    labels = np.array([0] * 5 + [1] * 4 + [2])
    with pytest.raises(ValueError, match=r"stratify: .*only 1 member"):
        train_test_split(X, y, stratify=labels)


@pytest.mark.parametrize("name, args", [("X", (None, np.arange(3))),
                                        ("y", (np.ones((3, 2)), None))])
def test_split_names_the_argument_that_is_not_an_array(name, args):
    with pytest.raises(ValueError, match=f"^{name}: expected an array with one row per sample, "
                                         "got None$"):
        train_test_split(*args)


@pytest.mark.parametrize("test_size", [2, 8])
def test_split_rejects_fewer_test_or_train_rows_than_classes(test_size):
    X, y = indexed(10)
    with pytest.raises(ValueError, match=r"test_size: expected at least one test and one train "
                                         r"row per class of stratify \(3 classes\)"):
        train_test_split(X, y, test_size=test_size, stratify=y)


def test_split_rejects_stratify_without_shuffle():
    X, y = indexed(10)
    with pytest.raises(ValueError, match="stratify.*shuffle"):
        train_test_split(X, y, stratify=y, shuffle=False)


# --- iterate_minibatches ------------------------------------------------------------------


@pytest.mark.parametrize("n, batch_size, sizes", [
    (10, 3, [3, 3, 3, 1]), (10, 5, [5, 5]), (10, 10, [10]), (10, 64, [10]),
    (10, None, [10]), (1, 1, [1]),
])
def test_minibatches_cover_every_row_once(n, batch_size, sizes):
    X, y = indexed(n)
    batches = list(iterate_minibatches(X, y, batch_size, seed=0))
    assert [len(xb) for xb, _ in batches] == sizes
    assert [len(yb) for _, yb in batches] == sizes
    ids = np.concatenate([xb[:, 0] for xb, _ in batches]).astype(int)
    assert np.array_equal(np.sort(ids), np.arange(n))
    for xb, yb in batches:
        assert np.array_equal(yb, xb[:, 0].astype(int) % 3)  # pairs stay together


def test_minibatches_order_is_seeded():
    X, y = indexed(100)

    def order(seed):
        return np.concatenate([xb[:, 0] for xb, _ in iterate_minibatches(X, y, 16, seed=seed)])

    assert np.array_equal(order(7), order(7))
    assert not np.array_equal(order(7), order(8))
    assert not np.array_equal(order(7), np.arange(100))  # actually shuffled


def test_minibatches_without_shuffle_are_views_in_order():
    X, y = indexed(10)
    batches = list(iterate_minibatches(X, y, 4, shuffle=False))
    assert np.array_equal(np.concatenate([xb[:, 0] for xb, _ in batches]), np.arange(10))
    assert all(np.shares_memory(xb, X) for xb, _ in batches)


def test_minibatches_each_pass_is_a_new_permutation_with_a_generator():
    X, y = indexed(50)
    rng = np.random.default_rng(0)
    first = np.concatenate([xb[:, 0] for xb, _ in iterate_minibatches(X, y, 8, seed=rng)])
    second = np.concatenate([xb[:, 0] for xb, _ in iterate_minibatches(X, y, 8, seed=rng)])
    assert np.array_equal(np.sort(first), np.sort(second))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_minibatches_reject_nonpositive_batch_size_at_call(batch_size):
    X, y = indexed(10)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_minibatches(X, y, batch_size)  # raised before iteration starts


@pytest.mark.parametrize("batch_size", [2.5, "8", True])
def test_minibatches_reject_non_integer_batch_size(batch_size):
    X, y = indexed(10)
    with pytest.raises(TypeError, match="batch_size"):
        iterate_minibatches(X, y, batch_size)


def test_minibatches_reject_length_mismatch():
    with pytest.raises(ValueError, match=r"X and y.*X with 5 and y with 6"):
        iterate_minibatches(np.zeros((5, 2)), np.zeros(6), 2)
