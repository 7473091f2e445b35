"""cnet.metrics: information measures, classification scores and distances."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from cnet import metrics
from cnet.metrics import (accuracy, confusion_matrix, cosine_similarity, cross_entropy, entropy,
                          hamming_distance, kl_divergence, l1_distance, l2_distance,
                          linf_distance, minkowski_distance)
from helpers import dims, seeds


def distributions(rng, shape, zeros=True):
    p = rng.uniform(0, 1, shape)
    if zeros:
        p *= rng.random(shape) > 0.3
        p[..., 0] += 0.1                    # never an all-zero row
    return p / p.sum(axis=-1, keepdims=True)


# ---- information measures -------------------------------------------------------------------

def test_known_entropies():
    assert entropy([0.5, 0.5]) == pytest.approx(0.693, abs=5e-4)
    assert entropy(np.full(6, 1 / 6)) == pytest.approx(1.792, abs=5e-4)
    assert entropy([0.5, 0.5]) == pytest.approx(math.log(2))
    assert entropy(np.full(6, 1 / 6)) == pytest.approx(math.log(6))
    assert entropy([1.0, 0.0]) == 0.0                     # 0 log 0 = 0, and no -0.0
    assert math.copysign(1.0, entropy([0, 1])) == 1.0
    assert entropy([0.25, 0.25, 0.5]) == pytest.approx(1.5 * math.log(2))


def test_batches_are_rows():
    h = entropy([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    assert isinstance(h, np.ndarray) and h.shape == (3,)
    assert_allclose(h, [math.log(2), 0.0, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))])
    # one q for every row of p broadcasts
    assert_allclose(kl_divergence([[0.5, 0.5], [0.25, 0.75]], [0.5, 0.5]),
                    [0.0, 0.25 * math.log(0.5) + 0.75 * math.log(1.5)])


def test_cross_entropy_and_kl_by_hand():
    p, q = [0.5, 0.5], [0.25, 0.75]
    assert cross_entropy(p, q) == pytest.approx(-0.5 * (math.log(0.25) + math.log(0.75)))
    assert kl_divergence(p, q) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert kl_divergence(p, p) == 0.0
    assert cross_entropy(p, p) == pytest.approx(entropy(p))
    # q = 0 where p > 0: infinite; p = 0 where q = 0: nothing
    assert kl_divergence([1.0, 0.0], [0.0, 1.0]) == math.inf
    assert cross_entropy([1.0, 0.0], [0.0, 1.0]) == math.inf
    assert kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0


@given(seed=seeds, k=dims, rows=st.integers(1, 5))
def test_identities(seed, k, rows):
    rng = np.random.default_rng(seed)
    p, q = distributions(rng, (rows, k)), distributions(rng, (rows, k), zeros=False)
    # H(p, q) = H(p) + KL(p || q); KL >= 0; H in [0, log k]
    assert_allclose(cross_entropy(p, q), entropy(p) + kl_divergence(p, q), rtol=1e-10,
                    atol=1e-12)
    assert (kl_divergence(p, q) >= -1e-12).all()
    h = entropy(p)
    assert (h >= 0).all() and (h <= math.log(k) + 1e-12).all()


def test_float32_softmax_rows_are_accepted():
    logits = np.random.default_rng(0).standard_normal((50, 1000)).astype(np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    assert entropy(p).shape == (50,)


@pytest.mark.parametrize("call, error, match", [
    (lambda: entropy([0.5, 0.6]), ValueError,
     "p: expected probabilities summing to 1 along the last axis, got a sum of 1.1"),
    (lambda: entropy([[0.5, 0.5], [0.2, 0.2]]), ValueError, "p: .*sum of 0.4 at row 1"),
    (lambda: entropy([1.5, -0.5]), ValueError,
     "p: expected non-negative finite probabilities, got -0.5 at index 1"),
    (lambda: entropy([np.nan, 1.0]), ValueError, "p: .*nan at index 0"),
    (lambda: entropy([[1.0, 0.0], [0.5, np.inf]]), ValueError, r"p: .*inf at index \(1, 1\)"),
    (lambda: entropy([]), ValueError, "p: expected a non-empty array"),
    (lambda: entropy(0.5), ValueError, "p: expected a non-empty array of at least one"),
    (lambda: entropy(["a", "b"]), TypeError, "p: expected float32, float64 or integer"),
    (lambda: entropy([True, False]), TypeError, "p: "),
    (lambda: kl_divergence([0.5, 0.5], [0.3, 0.3]), ValueError, "q: .*summing to 1"),
    (lambda: kl_divergence([0.5, 0.5], [1.0, 0.0, 0.0]), ValueError,
     "q: expected a shape that broadcasts with p's"),
    (lambda: cross_entropy([[0.5, 0.5]] * 2, [[1.0, 0.0]] * 3), ValueError, "q: "),
    (lambda: cross_entropy([-1.0, 2.0], [0.5, 0.5]), ValueError, "p: "),
])
def test_bad_probabilities_are_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- classification -------------------------------------------------------------------------

def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 2]) == 0.75
    assert type(accuracy([1], [1])) is float
    # multi-label 0/1 arrays are scored element by element
    assert accuracy([[1, 0], [0, 1]], np.array([[1, 1], [0, 1]])) == 0.75


def test_accuracy_takes_bools_whole_floats_and_strings():
    assert accuracy([True, False], [1, 1]) == 0.5
    assert accuracy([1.0, 0.0], np.array([1, 1], dtype=np.int8)) == 0.5
    assert accuracy(["cat", "dog"], ["cat", "cat"]) == 0.5
    assert accuracy(np.array(["cat", "dog"], dtype=object), ["cat", "dog"]) == 1.0


def test_confusion_matrix_takes_bools_and_whole_floats():
    y, p = np.array([0, 1, 1]), np.array([0.2, 0.7, 0.4])
    assert_array_equal(confusion_matrix(y, p > 0.5), [[1, 0], [1, 1]])
    assert_array_equal(confusion_matrix(y.astype(np.float32), [0.0, 1.0, 0.0]), [[1, 0], [1, 1]])


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2])
    assert cm.dtype == np.int64
    assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert_array_equal(confusion_matrix([0, 1], [1, 1], num_classes=4)[:2, :2], [[0, 1], [0, 1]])
    assert confusion_matrix([0, 1], [1, 1], num_classes=4).shape == (4, 4)


@given(seed=seeds, n=st.integers(1, 60), k=st.integers(1, 8))
def test_confusion_matrix_counts(seed, n, k):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    cm = confusion_matrix(y_true, y_pred, num_classes=k)
    assert cm.sum() == n
    assert_array_equal(cm.sum(axis=1), np.bincount(y_true, minlength=k))
    assert_array_equal(cm.sum(axis=0), np.bincount(y_pred, minlength=k))
    assert np.trace(cm) / n == pytest.approx(accuracy(y_true, y_pred))


def test_confusion_matrix_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 5, 100), rng.integers(0, 5, 100)
    assert_array_equal(confusion_matrix(y_true, y_pred, 5),
                       sklearn_metrics.confusion_matrix(y_true, y_pred, labels=range(5)))


@pytest.mark.parametrize("call, error, match", [
    (lambda: accuracy([0, 1], [0, 1, 1]), ValueError, r"y_pred: expected y_true's shape \(2,\)"),
    (lambda: accuracy([], []), ValueError, "y_true: expected a non-empty"),
    (lambda: accuracy(["a", "b"], [0, 1]), ValueError,
     r"y_pred: expected labels of y_true's kind \(strings\), got dtype int64"),
    (lambda: accuracy([0, 1], ["a", "b"]), ValueError, r"y_pred: .*y_true's kind \(numbers\)"),
    (lambda: accuracy([np.nan, 1], [0, 1]), ValueError,
     "y_true: expected whole-number class labels, got nan at index 0$"),
    (lambda: accuracy([None, 1], [0, 1]), ValueError,
     "y_true: expected labels that are all numbers or all strings, got NoneType and number"),
    (lambda: accuracy(np.array(["a", 1], dtype=object), ["a", "1"]), ValueError,
     "y_true: .*got number and string values"),
    (lambda: accuracy([0, 1], [0.5, 1]), ValueError, "y_pred: expected whole-number"),
    (lambda: confusion_matrix([0, 1.5], [0, 1]), ValueError,
     r"y_true: expected whole-number class labels, got 1.5 at index 1 "
     r"\(convert with \.astype\(np\.int64\)\)"),
    (lambda: confusion_matrix(["a", "b"], [0, 1]), TypeError, "y_true: expected integer"),
    (lambda: confusion_matrix([0, 1], [0, -1]), ValueError,
     "y_pred: expected non-negative class indices, got -1 at row 1"),
    (lambda: confusion_matrix([0, 3], [0, 1], num_classes=3), ValueError,
     r"num_classes: expected a positive int above every label \(largest 3\), got 3"),
    (lambda: confusion_matrix([0, 1], [0, 1], num_classes=2.0), TypeError, "num_classes: "),
    (lambda: confusion_matrix([[0, 1]], [[0, 1]]), ValueError, "y_true: expected a 1-D"),
    (lambda: confusion_matrix([0, 1], [0]), ValueError, "y_pred: expected 2 labels"),
])
def test_bad_labels_are_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- distances ------------------------------------------------------------------------------

def test_distances_by_hand():
    a, b = [1.0, 2.0, 3.0], [0.0, 0.0, 1.0]     # differences 1, 2, 2
    assert l1_distance(a, b) == 5.0
    assert l2_distance(a, b) == 3.0
    assert linf_distance(a, b) == 2.0
    assert minkowski_distance(a, b, 3) == pytest.approx(17 ** (1 / 3))
    assert minkowski_distance(a, b, 1) == l1_distance(a, b)
    assert minkowski_distance(a, b, math.inf) == linf_distance(a, b)
    assert cosine_similarity([1.0, 0.0], [0.0, 2.0]) == 0.0
    assert cosine_similarity([1.0, 1.0], [2.0, 2.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 1.0], [-3.0, -3.0]) == pytest.approx(-1.0)
    assert cosine_similarity([0.0, 0.0], [1.0, 2.0]) == 0.0     # a zero vector, as torch
    assert hamming_distance([1, 0, 1, 1], [1, 1, 0, 1]) == 2    # a count, not a fraction
    assert hamming_distance(list("karolin"), list("kathrin")) == 3


def test_distances_per_row_and_broadcast():
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert_allclose(l2_distance(a, [0.0, 0.0]), [0.0, 5.0])
    assert_allclose(l1_distance(a, a[::-1]), [7.0, 7.0])
    counts = hamming_distance([[0, 1], [1, 1]], [1, 1])
    assert counts.dtype == np.int64 and counts.tolist() == [1, 0]


def test_minkowski_does_not_overflow():
    assert minkowski_distance([1e200, 0.0], [0.0, 0.0], 3) == pytest.approx(1e200)
    assert minkowski_distance([1e-200, 1e-200], [0.0, 0.0], 4) == pytest.approx(
        2 ** 0.25 * 1e-200)
    assert minkowski_distance([1.0, 1.0], [1.0, 1.0], 3) == 0.0


def test_l2_and_l1_distances_do_not_overflow_or_underflow():
    zero = [0.0, 0.0]
    assert l2_distance([1e300, 1e300], zero) == pytest.approx(math.sqrt(2) * 1e300)
    assert l2_distance([1e-300, 1e-300], zero) == pytest.approx(math.sqrt(2) * 1e-300)
    assert_allclose(l2_distance([[1e300, 0.0], [3.0, 4.0], [0.0, 0.0]], zero), [1e300, 5.0, 0.0])
    assert l1_distance([1e300, 1e300], zero) == 2e300
    assert l1_distance([1e-300, 1e-300], zero) == 2e-300


@given(seed=seeds, n=dims, p=st.sampled_from([1.0, 1.5, 2.0, 3.0, 7.0]))
def test_distances_match_scipy(seed, n, p):
    distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    assert l1_distance(a, b) == pytest.approx(distance.cityblock(a, b))
    assert l2_distance(a, b) == pytest.approx(distance.euclidean(a, b))
    assert linf_distance(a, b) == pytest.approx(distance.chebyshev(a, b))
    assert minkowski_distance(a, b, p) == pytest.approx(distance.minkowski(a, b, p))
    assert cosine_similarity(a, b) == pytest.approx(1 - distance.cosine(a, b), abs=1e-12)
    bits_a, bits_b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    assert hamming_distance(bits_a, bits_b) == round(distance.hamming(bits_a, bits_b) * n)


@given(seed=seeds, rows=dims, cols=dims)
def test_cosine_matches_torch(seed, rows, cols):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
    expected = torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=-1)
    assert_allclose(cosine_similarity(a, b), expected.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("call, error, match", [
    (lambda: minkowski_distance([1.0], [0.0], 0.5), ValueError, "p: expected a real number >= 1"),
    (lambda: minkowski_distance([1.0], [0.0], "2"), TypeError, "p: "),
    (lambda: minkowski_distance([1.0], [0.0], math.nan), ValueError, "p: "),
    (lambda: l2_distance([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError,
     r"b: expected a shape that broadcasts with a's \(2,\)"),
    (lambda: l1_distance([1.0, 2.0], [1.0]), ValueError, "b: expected 2 values along the last"),
    (lambda: l1_distance("ab", [1.0]), TypeError, "a: "),
    (lambda: cosine_similarity([], []), ValueError, "a: expected a non-empty"),
    (lambda: hamming_distance([1, 0], [1, 0, 1]), ValueError, "b: "),
])
def test_bad_vectors_are_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_public_names():
    assert set(metrics.__all__) == {
        "entropy", "cross_entropy", "kl_divergence", "accuracy", "confusion_matrix",
        "l1_distance", "l2_distance", "linf_distance", "minkowski_distance",
        "cosine_similarity", "hamming_distance"}
