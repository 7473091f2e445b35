"""cnet.sklearn: scikit-learn's estimator checks, parity with sklearn's own MLP, the
sklearn API (labels, partial_fit, warm_start, early stopping, pickling) and model
selection on the digits."""
import copy
import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.datasets import (make_classification, make_multilabel_classification,  # noqa: E402
                              make_regression)
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import cnet  # noqa: E402
from cnet.sklearn import MLPClassifier, MLPRegressor, _expected_failed_checks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --- scikit-learn's estimator checks ----------------------------------------------------

# max_iter=100 as sklearn's own test suite runs its MLPs; float64 runs every check with no
# expected failure (the float32 ones are rounding-level, see cnet.sklearn).
ESTIMATORS = [MLPClassifier(max_iter=100, random_state=0),
              MLPRegressor(max_iter=100, random_state=0),
              MLPClassifier(max_iter=100, random_state=0, dtype="float64"),
              MLPRegressor(max_iter=100, random_state=0, dtype="float64")]
_CHECK_OPTIONS = ({"expected_failed_checks": _expected_failed_checks}
                  if "expected_failed_checks" in inspect.signature(
                      parametrize_with_checks).parameters else {})


@parametrize_with_checks(ESTIMATORS, **_CHECK_OPTIONS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --- parity with sklearn.neural_network ---------------------------------------------------

def _problems():
    Xc, yc = make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3,
                                 random_state=0)
    Xb, yb = make_classification(n_samples=120, n_features=6, random_state=1)
    Xm, ym = make_multilabel_classification(n_samples=120, n_features=6, n_classes=3,
                                            random_state=0)
    Xr, yr = make_regression(n_samples=120, n_features=6, n_targets=2, random_state=0)
    yr = yr / 100
    return {"multiclass": (Xc, yc), "binary": (Xb, yb), "multilabel": (Xm, ym),
            "regression": (Xr, yr[:, 0]), "multioutput": (Xr, yr)}


PROBLEMS = _problems()


def _pair(problem, **params):
    X, y = PROBLEMS[problem]
    kind = "Regressor" if problem in ("regression", "multioutput") else "Classifier"
    theirs = getattr(neural_network, "MLP" + kind)(**params).fit(X, y)
    ours = {"Classifier": MLPClassifier, "Regressor": MLPRegressor}[kind](
        dtype="float64", **params).fit(X, y)
    return theirs, ours, X


PARITY = dict(hidden_layer_sizes=(10, 7), activation="tanh", alpha=0.01, batch_size=40,
              max_iter=15, shuffle=False, random_state=3, learning_rate_init=0.01)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("schedule", [dict(learning_rate="constant"),
                                      dict(learning_rate="constant", nesterovs_momentum=False),
                                      dict(learning_rate="invscaling", momentum=0.0)])
def test_sgd_matches_sklearn(problem, schedule):
    """Same initial weights, losses, L2 penalty, (Nesterov) momentum and schedule: with
    float64 and no shuffling, SGD reproduces sklearn's weights to round-off. (With a
    learning rate that changes, momentum differs: torch's velocity is in gradient units,
    sklearn's carries the learning rates of earlier steps.)"""
    theirs, ours, X = _pair(problem, solver="sgd", **schedule, **PARITY)
    assert ours.n_iter_ == theirs.n_iter_ == 15
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        assert a.shape == b.shape
        assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    # the penalty term of an epoch's loss uses the weights at the end of the epoch
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    if hasattr(theirs, "predict_proba"):
        assert_array_equal(ours.predict(X), theirs.predict(X))
        assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9, atol=1e-12)
    else:
        assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)


def test_loss_curve_matches_sklearn_without_penalty():
    theirs, ours, _ = _pair("multiclass", solver="sgd", **{**PARITY, "alpha": 0.0})
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-10)


@pytest.mark.parametrize("problem", ["multiclass", "binary", "multioutput"])
def test_adam_close_to_sklearn(problem):
    """torch's Adam adds epsilon after the bias correction, sklearn's before: the weights
    differ at the level of epsilon-sized steps."""
    theirs, ours, X = _pair(problem, solver="adam", **PARITY)
    for a, b in zip(theirs.coefs_, ours.coefs_):
        assert_allclose(b, a, atol=1e-3)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-3)


def test_lbfgs_reaches_sklearns_loss():
    """A different L-BFGS (torch's, with a strong-Wolfe line search) on the same objective."""
    theirs, ours, X = _pair("multiclass", solver="lbfgs",
                            **{**PARITY, "max_iter": 1000, "alpha": 3.0, "tol": 1e-6})
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.02)
    assert ours.score(X, PROBLEMS["multiclass"][1]) >= 0.85
    assert 1 <= ours.n_iter_ < 1000
    assert not hasattr(ours, "partial_fit")
    assert not hasattr(ours, "loss_curve_")


def test_lbfgs_reaches_sklearns_loss_on_multilabel_targets():
    """sklearn's logistic loss sums over the labels: the L2 penalty weighs against k times
    cnet's mean loss, so the objective L-BFGS minimises is scaled by the number of labels."""
    theirs, ours, _ = _pair("multilabel", solver="lbfgs",
                            **{**PARITY, "max_iter": 1000, "alpha": 3.0, "tol": 1e-6})
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.02)


# --- labels and targets ------------------------------------------------------------------

def _blobs(n=90, classes=(0, 1, 2), seed=0):
    rng = np.random.RandomState(seed)
    y = np.asarray(classes)[np.arange(n) % len(classes)]
    centres = rng.randn(len(classes), 4) * 4
    X = centres[np.arange(n) % len(classes)] + rng.randn(n, 4)
    return X, y


@pytest.mark.parametrize("classes", [("cat", "dog", "emu"), (-5, 10, 100), (7, 3),
                                     (True, False), (2.0, 0.0, 5.0)])
def test_arbitrary_class_labels(classes):
    X, y = _blobs(classes=classes)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0,
                        learning_rate_init=0.01).fit(X, y)
    assert_array_equal(clf.classes_, np.sort(np.asarray(classes)))
    predicted = clf.predict(X)
    assert predicted.dtype == clf.classes_.dtype
    assert set(predicted) <= set(classes)
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(classes))
    assert_array_equal(clf.classes_[np.argmax(proba, axis=1)], predicted)
    assert_allclose(clf.predict_log_proba(X), np.log(proba))
    assert clf.n_outputs_ == (1 if len(classes) == 2 else len(classes))
    assert clf.out_activation_ == ("logistic" if len(classes) == 2 else "softmax")


def test_multilabel_targets():
    X, Y = PROBLEMS["multilabel"]
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=0,
                        learning_rate_init=0.01).fit(X, Y)
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict(X).shape == Y.shape
    assert set(np.unique(clf.predict(X))) <= {0, 1}
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and ((proba >= 0) & (proba <= 1)).all()
    assert clf.score(X, Y) > 0.5      # subset accuracy


def test_one_class_is_an_error():
    X, _ = _blobs()
    with pytest.raises(ValueError, match="1 class"):
        MLPClassifier().fit(X, np.full(len(X), "a"))


def test_continuous_targets_are_rejected_by_the_classifier():
    X, _ = _blobs()
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, np.linspace(0, 1, len(X)))


def test_regression_output_shapes():
    X, Y = PROBLEMS["multioutput"]
    one = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (len(X),)
    assert one.n_outputs_ == 1 and one.out_activation_ == "identity"
    two = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, Y)
    assert two.predict(X).shape == Y.shape and two.n_outputs_ == 2
    with pytest.warns(DataConversionWarning):
        column = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5,
                              random_state=0).fit(X, Y[:, :1])
    assert_array_equal(column.predict(X), one.predict(X))


def test_regression_learns():
    X, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=0)
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(32,),
                                                       max_iter=300, learning_rate_init=0.01,
                                                       random_state=0))
    reg.fit(X, y / y.std())
    assert reg.score(X, y / y.std()) > 0.95


def test_result_dtypes_follow_the_input():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    assert clf.model_.dtype == np.float32
    assert clf.predict_proba(X).dtype == np.float64
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    wide = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                         dtype="float64").fit(X, y)
    assert wide.model_.dtype == np.float64 and wide.coefs_[0].dtype == np.float64


# --- fitted state ----------------------------------------------------------------------

def test_fitted_attributes_and_views():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=7, random_state=0)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(AttributeError):
        clf.coefs_
    clf.fit(X, y)
    assert clf.n_features_in_ == 4 and clf.n_layers_ == 4 and clf.n_iter_ == 7
    assert clf.t_ == 7 * len(X) and len(clf.loss_curve_) == 7 and clf.loss_ == clf.loss_curve_[-1]
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 8), (8, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (3,)]
    assert isinstance(clf.model_, cnet.Sequential)
    assert np.shares_memory(clf.coefs_[0], clf.model_.flat_data)
    before = clf.predict_proba(X)
    clf.coefs_[-1][...] = 0
    clf.intercepts_[-1][...] = 0
    assert_allclose(clf.predict_proba(X), np.full_like(before, 1 / 3), rtol=1e-6)


def test_same_random_state_same_model():
    X, y = _blobs()
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=1).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=1).fit(X, y)
    c = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=2).fit(X, y)
    assert_array_equal(a.model_.flat_data, b.model_.flat_data)
    assert not np.array_equal(a.model_.flat_data, c.model_.flat_data)


def test_parameters_are_checked_at_fit_not_init():
    X, y = _blobs()
    bad = [dict(activation="softplus"), dict(solver="rmsprop"), dict(hidden_layer_sizes=(0,)),
           dict(hidden_layer_sizes=(4.5,)), dict(alpha=-1.0), dict(batch_size=0),
           dict(learning_rate="cyclic"), dict(learning_rate_init=0.0), dict(max_iter=0),
           dict(momentum=1.5), dict(validation_fraction=1.0), dict(beta_1=1.0),
           dict(epsilon=0.0), dict(n_iter_no_change=0), dict(dtype="int8"),
           dict(shuffle="yes"), dict(tol=float("nan"))]
    for params in bad:
        clf = MLPClassifier(**params)               # stored as given
        assert clf.get_params()[next(iter(params))] is params[next(iter(params))]
        with pytest.raises(ValueError):
            clf.fit(X, y)


def test_sample_weight_is_not_accepted():
    X, y = _blobs()
    with pytest.raises(TypeError, match="sample_weight"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.ones(len(X)))


def test_divergence_is_a_value_error():
    X, y = make_regression(n_samples=50, n_features=4, random_state=0)
    reg = MLPRegressor(solver="sgd", learning_rate_init=10.0, momentum=0.0, max_iter=20)
    with pytest.raises(ValueError, match="non-finite"):
        reg.fit(X * 1e3, y * 1e3)


def test_batch_size_larger_than_the_data_is_clipped():
    X, y = _blobs(n=30)
    with pytest.warns(UserWarning, match="clipped"):
        MLPClassifier(batch_size=100, max_iter=2).fit(X, y)


# --- stopping rules ------------------------------------------------------------------------

def test_max_iter_warns_convergence():
    X, y = _blobs()
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(max_iter=3).fit(X, y)


def test_tol_stops_training_as_sklearn():
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(max_iter=100, tol=100.0, n_iter_no_change=4,
                            random_state=0).fit(X, y)
    assert clf.n_iter_ == 4 + 2          # as sklearn: the first epoch sets best_loss_
    assert clf.best_loss_ == min(clf.loss_curve_)


def test_adaptive_learning_rate_as_sklearn():
    """No improvement by tol for n_iter_no_change epochs divides the rate by 5, and stops
    once it is below 1e-6."""
    params = dict(solver="sgd", learning_rate="adaptive", tol=100.0, n_iter_no_change=2,
                  momentum=0.0, **{**PARITY, "max_iter": 30})
    theirs, ours, X = _pair("multiclass", **params)
    assert ours.n_iter_ == theirs.n_iter_ < 30
    assert ours._sgd_lr == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
    for a, b in zip(theirs.coefs_, ours.coefs_):
        assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_early_stopping_keeps_the_best_weights():
    X, y = _blobs(n=200)
    clf = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=3,
                        max_iter=200, random_state=0, validation_fraction=0.2,
                        learning_rate_init=0.02)
    clf.fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    # the same split (not stratified for multiclass y, as sklearn's): the restored weights
    # score the best validation score
    X_train, X_val, y_train, y_val = train_test_split(
        X, y, random_state=_after_init(clf), test_size=0.2)
    assert clf.score(X_val, y_val) == clf.best_validation_score_
    with pytest.raises(ValueError, match="early_stopping"):
        clf.partial_fit(X, y)


def test_early_stopping_keeps_the_first_of_tied_best_weights_as_sklearn():
    """Validation accuracies tie often: as sklearn, the weights kept are those of the first
    epoch that reached the best score; a later epoch that only equals it does not replace
    them. With float64 SGD, no shuffling and whole batches (96 training rows), the weights
    match sklearn's to round-off."""
    theirs, ours, _ = _pair("binary", solver="sgd", early_stopping=True,
                            validation_fraction=0.2, n_iter_no_change=5,
                            **{**PARITY, "max_iter": 40, "batch_size": 32, "random_state": 0})
    assert ours.validation_scores_ == theirs.validation_scores_
    scores = np.array(ours.validation_scores_)
    assert np.count_nonzero(scores == scores.max()) > 1     # the best score is tied
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        assert_allclose(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_early_stopping_validation_split_as_sklearn(problem):
    """The same validation rows as sklearn: it stratifies only one-output classification
    targets (binary; its multiclass y is one-hot by then, so it is not stratified, nor is
    multilabel y or regression). The same training rows in the same order give sklearn's
    weights to round-off with float64 SGD, no shuffling and whole batches (96 rows)."""
    theirs, ours, _ = _pair(problem, solver="sgd", early_stopping=True,
                            validation_fraction=0.2, n_iter_no_change=3,
                            **{**PARITY, "max_iter": 30, "batch_size": 32})
    assert ours.n_iter_ == theirs.n_iter_
    assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def _after_init(clf):
    """The RandomState of a fit after the initial weights were drawn (the split's state)."""
    rng = np.random.RandomState(clf.random_state)
    for fan_in, fan_out in zip(clf._layer_units[:-1], clf._layer_units[1:]):
        rng.uniform(size=(fan_in, fan_out))
        rng.uniform(size=fan_out)
    return rng


def test_early_stopping_regression():
    X, y = make_regression(n_samples=200, n_features=4, noise=5.0, random_state=0)
    reg = MLPRegressor(early_stopping=True, max_iter=500, random_state=0,
                       learning_rate_init=0.01).fit(X, y / y.std())
    assert reg.n_iter_ < 500
    assert reg.best_validation_score_ > 0.9


# --- partial_fit and warm_start ------------------------------------------------------------

def test_partial_fit_needs_classes_first():
    X, y = _blobs()
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])      # a subset of the classes
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (len(X), 3)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, np.where(y == 2, 9, y))
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="not in `classes`"):
        MLPClassifier().partial_fit(X, y, classes=[0, 1])


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_epochs_equal_fit(solver):
    """Without shuffling, k calls of partial_fit are k epochs of fit (the optimizer's state
    carries over between calls)."""
    X, y = _blobs()
    params = dict(hidden_layer_sizes=(8,), solver=solver, shuffle=False, random_state=0,
                  batch_size=32)
    fitted = MLPClassifier(max_iter=5, **params).fit(X, y)
    stepped = MLPClassifier(**params)
    for _ in range(5):
        stepped.partial_fit(X, y, classes=np.unique(y))
    assert_array_equal(stepped.model_.flat_data, fitted.model_.flat_data)
    assert stepped.loss_curve_ == fitted.loss_curve_
    assert stepped.t_ == fitted.t_ and stepped.n_iter_ == 1


def test_regressor_partial_fit():
    X, y = PROBLEMS["regression"]
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        reg.partial_fit(X, y)
    assert len(reg.loss_curve_) == 3 and reg.loss_curve_[-1] < reg.loss_curve_[0]
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(X[:, :-1], y)


def test_warm_start_continues():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, warm_start=True, random_state=0)
    clf.fit(X, y)
    first = clf.model_
    clf.fit(X, y)
    assert clf.model_ is first and len(clf.loss_curve_) == 8 and clf.n_iter_ == 4
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X[y != 2], y[y != 2])
    cold = MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, random_state=0).fit(X, y)
    cold.fit(X, y)
    assert len(cold.loss_curve_) == 4


# --- pickling and copies -------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_pickle_round_trip(solver):
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, max_iter=5,
                        random_state=0).fit(X, y)
    clone = pickle.loads(pickle.dumps(clf))
    assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))
    assert np.shares_memory(clone.coefs_[0], clone.model_.flat_data)
    assert not np.shares_memory(clone.model_.flat_data, clf.model_.flat_data)
    if solver != "lbfgs":      # the optimizer's state travels too: training goes on alike
        clf.partial_fit(X, y)
        clone.partial_fit(X, y)
        assert_array_equal(clone.model_.flat_data, clf.model_.flat_data)
    deep = copy.deepcopy(clf)
    assert_array_equal(deep.predict(X), clf.predict(X))


def test_regressor_pickle_round_trip():
    X, y = PROBLEMS["multioutput"]
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                       dtype="float64").fit(X, y)
    clone = pickle.loads(pickle.dumps(reg))
    assert clone.model_.dtype == np.float64
    assert_array_equal(clone.predict(X), reg.predict(X))


# --- the ecosystem -------------------------------------------------------------------------

def test_pipeline_grid_search_on_digits():
    X, y = cnet.data.load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    grid.fit(X_train, y_train)
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes",
                                      "mlpclassifier__alpha"}
    assert grid.best_score_ > 0.9
    assert grid.score(X_test, y_test) > 0.9


def test_import_cnet_does_not_import_sklearn():
    code = "import sys, cnet; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
