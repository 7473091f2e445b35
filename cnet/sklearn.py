"""scikit-learn estimators over cnet: MLPClassifier and MLPRegressor.

A thin adapter: each estimator builds a cnet Sequential (Dense layers with sklearn's
activation between them) and trains it with cnet's Trainer, so fit runs the compiled step
runner; there is no training loop here, only what sklearn's API adds around it (input
validation, label encoding, the stopping rules, the fitted attributes). The arguments
follow sklearn.neural_network.MLPClassifier / MLPRegressor:

>>> from cnet.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0).fit(X, y)
>>> clf.predict_proba(X[:3]), clf.score(X, y)

Same as sklearn: the Glorot-uniform initialisation (drawn from random_state in the same
order), the losses (softmax cross-entropy for multiclass, logistic for binary and
multilabel, half squared error for regression), alpha as an L2 penalty on the weights but
not the biases, added to each batch's gradient as alpha / batch_size * W (coupled, not
decoupled weight decay: for "sgd" and "adam" it is the optimizer's torch-style
weight_decay on the weights' parameter group, scaled to sklearn's objective), Nesterov
momentum, the learning-rate schedules of "sgd" ("constant", "invscaling", "adaptive"),
the tol / n_iter_no_change stopping rule, early_stopping's validation rows (stratified
for binary targets only: sklearn does not stratify its one-hot multiclass y, nor multilabel
y), partial_fit, warm_start, and the fitted attributes (classes_, n_features_in_, n_iter_,
t_, loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_, n_layers_,
n_outputs_, out_activation_, coefs_, intercepts_).

What differs:
- dtype ("float32" by default, or "float64") is the precision of the model, whatever
  the input's dtype (sklearn computes in the input's): inputs are converted to it.
  predict_proba and regression predictions come back in the input's floating dtype
  (float32 for float32 X, else float64), as sklearn's.
- Adam is torch's: its epsilon is added after the bias correction of the second moment
  (sklearn adds it before), a difference of order epsilon in each step.
- The batch penalty alpha / batch_size uses the nominal batch size for every batch,
  also for a smaller last batch (sklearn divides by the rows of that batch); the penalty
  term in loss_curve_ is computed with the weights at the end of the epoch (sklearn sums
  it batch by batch), so loss_curve_ differs from sklearn's in the penalty's round-off.
- SGD momentum is torch's: the velocity is kept in gradient units and scaled by the
  current learning rate. With a constant learning rate this is sklearn's update exactly;
  when the rate changes ("invscaling", "adaptive") sklearn's velocity still carries the
  rates of earlier steps.
- "lbfgs" is cnet.optim.LBFGS (a port of torch.optim.LBFGS, with the strong-Wolfe line
  search and 10 correction pairs), not scipy's L-BFGS-B: max_iter bounds its iterations,
  max_fun its function evaluations and tol the largest gradient component, as in sklearn.
  For multi-output regression it minimises the objective whose gradient sklearn uses
  (half the squared error summed over the outputs).
- No sample_weight, no sparse input, no loss="poisson" (MLPRegressor).
- The estimator pickles (sklearn's model selection needs it); to keep a trained network
  as a file use cnet.save(estimator.model_, path).
"""
import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (check_classification_targets, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - only without scikit-learn
    raise ImportError("cnet.sklearn needs scikit-learn: pip install 'cnet[sklearn]' "
                      "(or pip install scikit-learn)") from exc

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from cnet import optim
from cnet.callbacks import Callback
from cnet.layers import Dense, ReLU, Sigmoid, Tanh
from cnet.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from cnet.model import Sequential
from cnet.trainer import Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}
_SOLVERS = ("adam", "sgd", "lbfgs")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_MAX_SEED = np.iinfo(np.int32).max

# sklearn's estimator checks that cannot hold in float32 (dtype="float32", the default):
# they compare predictions for a row made in batches of different sizes or orders with
# tolerances (1e-7, 1e-9) below float32's resolution, and a BLAS may round a row's dot
# products differently depending on its position in the batch (blocking, gemv paths) by
# an ulp (~6e-8 relative). They pass with dtype="float64", and often pass in float32 too.
_FLOAT32_XFAIL_CHECKS = {
    "check_methods_subset_invariance":
        "float32 predictions may differ by an ulp with the batch size (BLAS blocking); "
        "the check's tolerance is 1e-7. Passes with dtype='float64'.",
    "check_methods_sample_order_invariance":
        "float32 predictions may differ by an ulp with a row's place in the batch (BLAS "
        "blocking); the check's tolerance is 1e-9. Passes with dtype='float64'.",
}


def _expected_failed_checks(estimator):
    """{check name: reason} of the estimator checks expected to fail for this estimator
    (for parametrize_with_checks(expected_failed_checks=...), scikit-learn >= 1.6)."""
    try:
        float32 = np.dtype(estimator.dtype) == np.float32
    except TypeError:
        float32 = False
    return dict(_FLOAT32_XFAIL_CHECKS) if float32 else {}


if hasattr(optim, "LBFGS"):
    class _PenalisedLBFGS(optim.LBFGS):
        """cnet's LBFGS on sklearn's full-batch objective: the Trainer's closure gives the
        mean loss and its gradient; this adds the scale and the L2 penalty on the weights,
        0.5 * c * |W|² with c = alpha / n_samples."""

        def __init__(self, params, weights=(), c=0.0, scale=1.0, **kwargs):
            super().__init__(params, **kwargs)
            self._weights, self._c, self._scale = list(weights), float(c), float(scale)

        @property
        def iterations(self):
            return self._lbfgs["n_iter"]

        @property
        def evaluations(self):
            return self._lbfgs["func_evals"]

        def step(self, closure):
            def penalised():
                loss = self._scale * float(closure())
                if self._scale != 1.0:
                    self.flat_grad *= self._scale
                penalty = 0.0
                for w in self._weights:
                    w.grad += self._c * w.data
                    penalty += float(np.vdot(w.data, w.data))
                return loss + 0.5 * self._c * penalty
            return super().step(penalised)
else:  # pragma: no cover - a cnet without LBFGS
    _PenalisedLBFGS = None


class _EpochEnd(Callback):
    """Hands each epoch's logs to the estimator (sklearn's end-of-iteration bookkeeping)."""

    def __init__(self, estimator, context):
        self.estimator, self.context = estimator, context

    def on_epoch_end(self, trainer, epoch, logs):
        if self.estimator._end_epoch(logs, self.context):
            trainer.stop_training = True


def _check_number(name, value, low, high=np.inf, low_open=False, high_open=False,
                  integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        raise ValueError(f"{name}: expected {'an int' if integer else 'a number'}, "
                         f"got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not np.isfinite(value) or too_low or too_high:
        raise ValueError(f"{name}: expected a value in {'(' if low_open else '['}{low}, "
                         f"{high}{')' if high_open else ']'}, got {value!r}")
    return value


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    # --- hyper-parameters: checked at fit, as sklearn requires -----------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        for size in sizes:
            if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
                raise ValueError(f"hidden_layer_sizes: expected positive ints, got "
                                 f"{self.hidden_layer_sizes!r}")
            if size <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(size) for size in sizes]

    def _check_params(self):
        self._hidden_sizes()
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {list(_SOLVERS)}, got {self.solver!r}")
        if self.solver == "lbfgs" and _PenalisedLBFGS is None:  # pragma: no cover
            raise ValueError("solver: 'lbfgs' needs cnet.optim.LBFGS, which this cnet lacks")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate: expected one of {list(_LEARNING_RATES)}, "
                             f"got {self.learning_rate!r}")
        _check_number("alpha", self.alpha, 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        _check_number("power_t", self.power_t, 0.0)
        _check_number("max_iter", self.max_iter, 1, integer=True)
        _check_number("tol", self.tol, 0.0)
        _check_number("momentum", self.momentum, 0.0, 1.0)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 1.0,
                      low_open=True, high_open=True)
        _check_number("beta_1", self.beta_1, 0.0, 1.0, high_open=True)
        _check_number("beta_2", self.beta_2, 0.0, 1.0, high_open=True)
        _check_number("epsilon", self.epsilon, 0.0, low_open=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, 1, integer=True)
        _check_number("max_fun", self.max_fun, 1, integer=True)
        for name in ("shuffle", "nesterovs_momentum", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        return dtype

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers; "
                                 f"{self.solver!r} is not stochastic.")
        return True

    # --- the model -----------------------------------------------------------------------

    def _build(self, layer_units, activation, dtype):
        """The Sequential for these widths: Dense layers with `activation` between them."""
        return Sequential.mlp(layer_units, activation=_ACTIVATIONS[activation], init="zeros",
                              dtype=dtype)

    def _dense_layers(self):
        return [layer for layer in self.model_.layers if isinstance(layer, Dense)]

    def _new_loss(self):
        if self._target_kind == "multiclass":
            return CrossEntropyLoss()
        if self._target_kind in ("binary", "multilabel"):
            return BCEWithLogitsLoss()
        return MSELoss()

    def _scales(self):
        """(gradient scale, reported-loss scale): sklearn's objective over cnet's mean loss.
        sklearn's logistic loss sums over the outputs (k of them) and averages over rows;
        its squared error is half the mean, with the gradient of half the sum over outputs."""
        k = self.n_outputs_
        return {"multiclass": (1.0, 1.0), "binary": (1.0, 1.0), "multilabel": (k, k),
                "regression": (k / 2.0, 0.5)}[self._target_kind]

    def _initialize(self, n_features, n_outputs, dtype, rng):
        """A new model with sklearn's Glorot-uniform initial weights and biases."""
        self._layer_units = [n_features, *self._hidden_sizes(), n_outputs]
        self._activation = self.activation
        self.model_ = self._build(self._layer_units, self._activation, dtype)
        factor = 2.0 if self._activation == "logistic" else 6.0
        for layer in self._dense_layers():
            bound = np.sqrt(factor / (layer.in_features + layer.out_features))
            layer.weight.data[...] = rng.uniform(-bound, bound,
                                                 (layer.in_features, layer.out_features)).T
            layer.bias.data[...] = rng.uniform(-bound, bound, layer.out_features)
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(self._layer_units)
        self.out_activation_ = {"multiclass": "softmax", "binary": "logistic",
                                "multilabel": "logistic",
                                "regression": "identity"}[self._target_kind]
        self.n_iter_ = 0
        self.t_ = 0
        self._optimizer = None
        self._trainer = None
        self._no_improvement_count = 0
        if self.solver == "lbfgs":
            return
        self.loss_curve_ = []
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _new_optimizer(self):
        """SGD or Adam over two parameter groups: the weights (L2 penalty as weight_decay,
        set per fit from alpha and the batch size) and the biases (no penalty)."""
        g = self._scales()[0]
        groups = [{"params": [l.weight for l in self._dense_layers()]},
                  {"params": [l.bias for l in self._dense_layers()], "weight_decay": 0.0}]
        if self.solver == "sgd":
            return optim.SGD(groups, lr=self.learning_rate_init * g, momentum=self.momentum,
                             nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return optim.Adam(groups, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                          eps=self.epsilon / g)

    @property
    def coefs_(self):
        """Weight matrices as in sklearn, (fan_in, fan_out): views of the model's weights."""
        if not hasattr(self, "model_"):
            raise AttributeError("coefs_: the estimator is not fitted yet")
        return [layer.weight.data.T for layer in self._dense_layers()]

    @property
    def intercepts_(self):
        """Bias vectors as in sklearn: views of the model's biases."""
        if not hasattr(self, "model_"):
            raise AttributeError("intercepts_: the estimator is not fitted yet")
        return [layer.bias.data for layer in self._dense_layers()]

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    def _weights_sq(self):
        return sum(float(np.vdot(l.weight.data, l.weight.data)) for l in self._dense_layers())

    # --- fitting -------------------------------------------------------------------------

    def fit(self, X, y):
        """Fit the model to X (n_samples, n_features) and y; returns self."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental, classes=None):
        dtype = self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        if not first:
            dtype = self.model_.dtype
        X, y = self._validate_input(X, y, dtype, first, incremental, classes)
        Y = self._encode(y, dtype)
        rng = check_random_state(self.random_state)
        if first:
            self._initialize(X.shape[1], Y.shape[1] if Y.ndim == 2 else len(self.classes_),
                             dtype, rng)
        elif self._n_model_outputs(Y) != self.model_.out_features:
            raise ValueError(f"y: expected {self.model_.out_features} outputs, as in the "
                             f"previous fit, got {self._n_model_outputs(Y)}")
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, Y)
            else:
                self._fit_stochastic(X, Y, rng, incremental)
        except FloatingPointError as exc:   # the weights kept are the last finite ones
            raise ValueError("Solver produced a non-finite loss. The input data may contain "
                             "large values and need to be preprocessed, or "
                             "learning_rate_init may be too large.") from exc
        return self

    def _n_model_outputs(self, Y):
        return len(self.classes_) if self._target_kind == "multiclass" else Y.shape[1]

    def _fit_stochastic(self, X, Y, rng, incremental):
        if not hasattr(self, "loss_curve_"):     # warm start from an lbfgs fit
            self.loss_curve_ = []
        if not self.early_stopping and getattr(self, "best_loss_", None) is None:
            self.best_loss_ = np.inf
        if self.early_stopping and getattr(self, "validation_scores_", None) is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        if not isinstance(self._optimizer, (optim.SGD, optim.Adam)) or not incremental:
            self._optimizer = self._new_optimizer()
            self._trainer = Trainer(self.model_, self._new_loss(), self._optimizer)
            self._sgd_lr = float(self.learning_rate_init)
        X_val = Y_val = None
        if self.early_stopping:
            # sklearn stratifies on its encoded y only when it has one column: binary, not
            # multiclass (one-hot by then) nor multilabel. Same rows for the same state.
            stratify = Y if self._target_kind == "binary" else None
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rng, stratify=stratify,
                                                  test_size=self.validation_fraction)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", stacklevel=4)
            batch_size = min(int(self.batch_size), n)
        g, report = self._scales()
        self._optimizer.param_groups[0]["weight_decay"] = self.alpha / (g * batch_size)
        n_batches = -(-n // batch_size)
        context = {"n": n, "report": report, "penalty": 0.5 * self.alpha * n_batches / n,
                   "X_val": X_val, "Y_val": Y_val, "stopped": False,
                   "best": self.model_.flat_data.copy() if self.early_stopping else None}
        self.n_iter_ = 0
        self._trainer.fit(X, Y, epochs=1 if incremental else self.max_iter,
                          batch_size=batch_size, shuffle=self.shuffle,
                          seed=int(rng.randint(_MAX_SEED)), verbose=0,
                          callbacks=[_EpochEnd(self, context)])
        if (not incremental and not context["stopped"]
                and self.n_iter_ == self.max_iter):
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          f"reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=4)
        if self.early_stopping:
            self.model_.flat_data[...] = context["best"]

    def _end_epoch(self, logs, context):
        """sklearn's end of an epoch: loss curve, stopping rule, learning-rate schedule.
        Returns True to stop training."""
        loss = context["report"] * logs["loss"] + context["penalty"] * self._weights_sq()
        self.n_iter_ += 1
        self.t_ += context["n"]
        self.loss_ = loss
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        if self.early_stopping:
            score = self._validation_score(context["X_val"], context["Y_val"])
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                context["best"][...] = self.model_.flat_data
        else:
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if loss < self.best_loss_:
                self.best_loss_ = loss
        sgd = self.solver == "sgd"
        if sgd and self.learning_rate == "invscaling":
            self._sgd_lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count > self.n_iter_no_change:
            if sgd and self.learning_rate == "adaptive" and self._sgd_lr > 1e-6:
                self._sgd_lr /= 5.0
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"Setting learning rate to {self._sgd_lr:f}")
            else:
                if self.verbose:
                    what = ("Validation score" if self.early_stopping else "Training loss")
                    print(f"{what} did not improve more than tol={self.tol:f} for "
                          f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                context["stopped"] = True
        if sgd:
            self._optimizer.lr = self._sgd_lr * self._scales()[0]
        return context["stopped"]

    def _fit_lbfgs(self, X, Y):
        g, report = self._scales()
        n = X.shape[0]
        weights = [l.weight for l in self._dense_layers()]
        self._optimizer = _PenalisedLBFGS(self.model_.parameters(), weights=weights,
                                          c=self.alpha / n, scale=g, max_iter=self.max_iter,
                                          max_eval=self.max_fun, tolerance_grad=self.tol,
                                          history_size=10, line_search_fn="strong_wolfe")
        self._trainer = Trainer(self.model_, self._new_loss(), self._optimizer)
        self._trainer.fit(X, Y, epochs=1, batch_size=None, shuffle=False, verbose=0)
        # at least 1 (sklearn's convention), also when the start already meets tol
        self.n_iter_ = max(1, self._optimizer.iterations)
        self.loss_ = (report * self._trainer.evaluate(X, Y)["loss"]
                      + 0.5 * self.alpha / n * self._weights_sq())
        if (self._optimizer.iterations >= self.max_iter
                or self._optimizer.evaluations >= self.max_fun):
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(max_iter={self.max_iter}, max_fun={self.max_fun}). Increase "
                          f"the number of iterations or scale the data.",
                          ConvergenceWarning, stacklevel=4)

    # --- prediction ----------------------------------------------------------------------

    def _check_X(self, X):
        """X validated and in the model's dtype, and the dtype of the results: X's own
        floating dtype (float32 or float64; float64 for anything else), as sklearn's MLP."""
        check_is_fitted(self)
        out = np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64
        return _validate_data(self, X, reset=False, dtype=self.model_.dtype), out

    # --- pickling: the model and optimizer travel as arrays, and are rebuilt -------------

    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        optimizer = state.pop("_optimizer", None)
        state.pop("_trainer", None)
        if model is not None:
            stochastic = isinstance(optimizer, (optim.SGD, optim.Adam))
            state["_cnet_state"] = {
                "dtype": model.dtype.name,
                "weights": model.state_dict(),
                "optimizer": type(optimizer).__name__ if stochastic else None,
                "optimizer_state": optimizer.state_dict() if stochastic else None,
            }
        return state

    def __setstate__(self, state):
        state = dict(state)
        saved = state.pop("_cnet_state", None)
        super().__setstate__(state)
        if saved is None:
            return
        self.model_ = self._build(self._layer_units, self._activation, saved["dtype"])
        self.model_.load_state_dict(saved["weights"])
        if saved["optimizer"] is not None:
            named = dict(self.model_.named_parameters())
            opt_state = saved["optimizer_state"]
            groups = [{**{k: (tuple(v) if k == "betas" else v) for k, v in group.items()},
                       "params": [named[name] for name in group["params"]]}
                      for group in opt_state["param_groups"]]
            self._optimizer = getattr(optim, saved["optimizer"])(groups)
            self._optimizer.load_state_dict(opt_state)
        else:   # lbfgs: a fresh one each fit; this one only lets the Trainer predict
            self._optimizer = _PenalisedLBFGS(self.model_.parameters())
        self._trainer = Trainer(self.model_, self._new_loss(), self._optimizer)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, sklearn's MLPClassifier trained by cnet.

    Binary problems have one logistic output (sklearn's layout), multiclass problems one
    softmax output per class, and multilabel problems (a 0/1 indicator matrix y) one
    logistic output per label. Class labels may be any sortable values (strings,
    non-contiguous ints): classes_ holds them in sorted order. See the module's
    documentation for the arguments and what differs from sklearn.
    """

    def _validate_input(self, X, y, dtype, first, incremental, classes):
        X, y = _validate_data(self, X, y, multi_output=True, dtype=dtype, reset=first)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        target = type_of_target(y)
        multilabel = target == "multilabel-indicator"
        if target not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"y: expected binary, multiclass or multilabel-indicator "
                             f"targets, got {target}")
        if first and not incremental or not hasattr(self, "classes_"):
            # a new problem: the classes come from y (fit) or from `classes` (partial_fit)
            found = np.arange(y.shape[1]) if multilabel else unique_labels(
                y if classes is None else classes)
            if not multilabel and len(found) < 2:
                raise ValueError(f"y: expected at least 2 classes, got 1 class: "
                                 f"{found.tolist()}")
            if not multilabel and classes is not None:
                unknown = np.setdiff1d(unique_labels(y), found, assume_unique=True)
                if len(unknown):
                    raise ValueError(f"`y` has classes not in `classes`: {unknown}")
            self.classes_ = found
            self._target_kind = ("multilabel" if multilabel else
                                 "binary" if len(found) == 2 else "multiclass")
            return X, y
        if multilabel != (self._target_kind == "multilabel"):
            raise ValueError(f"y: expected {'multilabel-indicator' if multilabel else 'class'} "
                             f"targets, as in the previous fit, got {target}")
        if multilabel:
            return X, y
        labels = unique_labels(y)
        if self.warm_start and not incremental:
            if set(labels) != set(self.classes_):
                raise ValueError(f"warm_start can only be used where `y` has the same "
                                 f"classes as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {labels}")
        elif len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{self.classes_}. 'y' has {labels}.")
        return X, y

    def _encode(self, y, dtype):
        """The Trainer's targets: class indices (multiclass), 0/1 columns (binary,
        multilabel)."""
        if self._target_kind == "multilabel":
            return np.ascontiguousarray(y, dtype=dtype)
        index = np.searchsorted(self.classes_, y)
        if self._target_kind == "binary":
            return (index == 1).astype(dtype).reshape(-1, 1)
        return index.astype(np.int64)

    def _validation_score(self, X, Y):
        probabilities = self._trainer.predict_proba(X)
        if self._target_kind == "multiclass":
            return accuracy_score(Y, np.argmax(probabilities, axis=1))
        predicted = (probabilities > 0.5).astype(np.int64)
        if self._target_kind == "binary":
            return accuracy_score(Y.ravel().astype(np.int64), predicted.ravel())
        return accuracy_score(Y.astype(np.int64), predicted)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y). The first call needs `classes` (all the labels that any
        call will see), as in sklearn; multilabel y gives its own."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(unique_labels(classes),
                                                        self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes) in the order of classes_ (for
        multilabel y, each label's probability)."""
        X, out = self._check_X(X)
        probabilities = self._trainer.predict_proba(X).astype(out, copy=False)
        if self._target_kind == "binary":
            return np.hstack([1 - probabilities, probabilities])
        return probabilities

    def predict_log_proba(self, X):
        """The log of predict_proba."""
        probabilities = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(probabilities, out=probabilities)

    def predict(self, X):
        """Class labels (from classes_), or the 0/1 indicator matrix for multilabel y."""
        probabilities = self.predict_proba(X)
        if self._target_kind == "multilabel":
            return (probabilities > 0.5).astype(np.int_)
        if self._target_kind == "binary":
            return self.classes_[(probabilities[:, 1] > 0.5).astype(np.intp)]
        return self.classes_[np.argmax(probabilities, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True, "_xfail_checks": _expected_failed_checks(self)}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, sklearn's MLPRegressor (squared error) trained by
    cnet. y may be 1-D (predict then returns 1-D) or (n_samples, n_outputs). See the
    module's documentation for the arguments and what differs from sklearn."""

    def _validate_input(self, X, y, dtype, first, incremental, classes):
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=dtype,
                              reset=first)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        self._target_kind = "regression"
        return X, y

    def _encode(self, y, dtype):
        return np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)

    def _validation_score(self, X, Y):
        return r2_score(Y, self._trainer.predict(X))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predictions, (n_samples,) for one output, else (n_samples, n_outputs)."""
        X, out = self._check_X(X)
        outputs = self._trainer.predict(X).astype(out, copy=False)
        return outputs.ravel() if outputs.shape[1] == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True, "_xfail_checks": _expected_failed_checks(self)}
