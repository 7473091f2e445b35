"""Layers: Dense (alias Linear) and the activations.

A layer is a pair of functions, `forward` and `backward`, over (batch, features) arrays.
Parameters live in the owning model's flat arena (see model.py); a layer holds views.
`forward` keeps what `backward` needs; `backward` accumulates parameter gradients
(PyTorch's accumulate-until-zero_grad) and returns the gradient w.r.t. its input.
"""

import numpy as np

from cnet import _activations, _batchnorm, _dense, _dropout
from cnet._validation import (FLOAT_DTYPES, as_numeric_array, c_array, check_number,
                               check_positive_int)
from cnet.init import INITIALIZERS, initialize

__all__ = ["Layer", "Dense", "Linear", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
           "Step", "Softmax", "Dropout", "BatchNorm1d"]


class Layer:
    """Base class. Subclasses without parameters only implement `_forward` / `_backward`."""

    training = True
    op = None   # how the step runner runs it: "dense", "activation", "dropout", "batchnorm"

    def param_shapes(self):
        """{name: shape} of the parameters this layer needs in the arena."""
        return {}

    def buffer_shapes(self):
        """{name: shape} of state that is not trained (running statistics)."""
        return {}

    def bind(self, parameters, buffers, rng):
        """Receive this layer's Parameter views and buffer views (from the model's arenas)
        and initialise them; rng is the model's seeded generator."""

    def output_width(self, in_features):
        """The number of output features for `in_features` inputs (None: any width)."""
        return in_features

    def config(self):
        """Constructor arguments, enough to rebuild the layer (used by save/load)."""
        return {}

    def __setattr__(self, name, value):
        # A layer in a model holds views of the model's arenas, which compiled code reads
        # without bounds checks: its parameters are not rebound, and a buffer's values are
        # copied into the view (a plain attribute would leave the step runner's copy behind).
        if name in self.__dict__.get("_bound", ()):     # set by the model that binds it
            if name in self.param_shapes() and value is not getattr(self, name):
                raise AttributeError(f"{type(self).__name__}.{name}: the parameter of a layer "
                                     f"in a model cannot be replaced; assign to "
                                     f".{name}.data to copy values into it")
            if name in self.buffer_shapes():
                view = getattr(self, name)
                values = as_numeric_array(f"{type(self).__name__}.{name}", value)
                if values.shape != view.shape:
                    raise ValueError(f"{type(self).__name__}.{name}: expected an array of "
                                     f"shape {view.shape}, got shape {values.shape}")
                view[...] = values
                return
        object.__setattr__(self, name, value)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        x = self._check_input(x)
        self._input = x
        self._output = self._forward(x)
        return self._output

    def backward(self, grad_output):
        if getattr(self, "_output", None) is None:
            raise ValueError(f"{type(self).__name__}.backward: call forward first")
        out = self._output
        grad = as_numeric_array("grad_output", grad_output)
        if grad.shape != out.shape:
            raise ValueError(f"grad_output: expected shape {out.shape}, got {grad.shape}")
        grad = c_array(grad, out.dtype)
        return self._backward(grad)

    def _check_input(self, x):
        if not isinstance(x, np.ndarray) or x.dtype not in FLOAT_DTYPES or x.ndim != 2:
            raise TypeError(f"x: expected a 2-D float32 or float64 array, got "
                            f"{type(x).__name__} {getattr(x, 'dtype', '')} "
                            f"{getattr(x, 'shape', '')}")
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one row")
        return c_array(x)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer: y = x @ weight.T + bias, weight of shape (out_features, in_features).

    init: "torch" (PyTorch's default), "he", "xavier", "normal" or "zeros" (see cnet.init).
    """

    op = "dense"

    def __init__(self, in_features, out_features, bias=True, init="torch"):
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.use_bias = bool(bias)
        if not (isinstance(init, str) and init in INITIALIZERS):
            raise ValueError(f"init: expected one of {sorted(INITIALIZERS)}, got {init!r}")
        self.init = init
        self.weight = None
        self.bias = None

    def param_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.use_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def bind(self, parameters, buffers, rng):
        self.weight = parameters["weight"]
        self.bias = parameters.get("bias")
        self.reset_parameters(rng)

    def reset_parameters(self, rng):
        initialize(self.init, rng, self.weight.data, self.bias.data if self.bias else None)

    def output_width(self, in_features):
        if in_features is not None and in_features != self.in_features:
            raise ValueError(f"{self!r}: expected {self.in_features} input features, "
                             f"the previous layer gives {in_features}")
        return self.out_features

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.use_bias, "init": self.init}

    def _check_input(self, x):
        if self.weight is None:
            raise ValueError(f"{self!r} has no parameters yet: place it in a Sequential")
        x = super()._check_input(x)
        if x.dtype != self.weight.dtype:
            raise TypeError(f"x: expected dtype {self.weight.dtype}, got {x.dtype}")
        if x.shape[1] != self.in_features:
            raise ValueError(f"x: expected {self.in_features} features, got {x.shape[1]}")
        return x

    def _forward(self, x):
        y = np.empty((x.shape[0], self.out_features), x.dtype)
        _dense.dense_forward(y, x, self.weight.data, self.bias.data if self.bias else None)
        return y

    def _backward(self, grad):
        dx = np.empty_like(self._input)
        _dense.dense_backward(self.weight.grad, self.bias.grad if self.bias else None, dx,
                              grad, self._input, self.weight.data, 1.0)
        return dx


Linear = Dense


class Activation(Layer):
    """An elementwise (or row-wise) function with a compiled forward and backward."""

    op = "activation"
    kind = None  # the kernel's ACT_* code, read by the step runner
    negative_slope = 0.0

    def _forward(self, x):
        y = np.empty_like(x)
        self._kernel_forward(y, x)
        return y

    def _backward(self, grad):
        dx = np.empty_like(grad)
        self._kernel_backward(dx, grad, self._input, self._output)
        return dx


class Identity(Activation):
    """y = x."""

    kind = _activations.ACT_IDENTITY
    _kernel_forward = staticmethod(_activations.identity_forward)
    _kernel_backward = staticmethod(_activations.identity_backward)


class ReLU(Activation):
    """y = max(x, 0)."""

    kind = _activations.ACT_RELU
    _kernel_forward = staticmethod(_activations.relu_forward)
    _kernel_backward = staticmethod(_activations.relu_backward)


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    kind = _activations.ACT_SIGMOID
    _kernel_forward = staticmethod(_activations.sigmoid_forward)
    _kernel_backward = staticmethod(_activations.sigmoid_backward)


class Tanh(Activation):
    """y = tanh(x)."""

    kind = _activations.ACT_TANH
    _kernel_forward = staticmethod(_activations.tanh_forward)
    _kernel_backward = staticmethod(_activations.tanh_backward)


class LeakyReLU(Activation):
    """y = x for x > 0, negative_slope * x otherwise."""

    kind = _activations.ACT_LEAKY_RELU

    def __init__(self, negative_slope=0.01):
        self.negative_slope = check_number("negative_slope", negative_slope, "a finite number")

    def config(self):
        return {"negative_slope": self.negative_slope}

    def _kernel_forward(self, y, x):
        _activations.leaky_relu_forward(y, x, self.negative_slope)

    def _kernel_backward(self, dx, dy, x, y):
        _activations.leaky_relu_backward(dx, dy, x, y, self.negative_slope)


class Softmax(Activation):
    """Row-wise softmax over the features (dim=1, or -1: the inputs are 2-D)."""

    kind = _activations.ACT_SOFTMAX

    def __init__(self, dim=-1):
        if isinstance(dim, (bool, np.bool_)) or dim not in (1, -1):
            raise ValueError(f"dim: expected 1 or -1 (the feature axis of a 2-D input), got {dim!r}")
        self.dim = dim

    def config(self):
        return {"dim": self.dim}

    _kernel_forward = staticmethod(_activations.softmax_forward)
    _kernel_backward = staticmethod(_activations.softmax_backward)


class Step(Activation):
    """Heaviside step: y = 1 where x >= 0, else 0. It has no useful gradient: inference only."""

    kind = _activations.ACT_STEP
    _kernel_forward = staticmethod(_activations.step_forward)

    def _backward(self, grad):
        raise ValueError("Step has no gradient (it is 0 almost everywhere): use it for "
                         "inference only, or train with Sigmoid and swap in Step afterwards")


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability p and scale the
    rest by 1/(1-p); in evaluation, the identity. Masks come from a stream seeded by the
    model's seed, the same in the manual loop and in Trainer.fit."""

    op = "dropout"

    def __init__(self, p=0.5):
        self.p = check_number("p", p, "a probability in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        self.rng_state = np.zeros(2, np.uint64)   # (key, counter) of the mask stream

    def bind(self, parameters, buffers, rng):
        self.rng_state[:] = (rng.integers(0, 2**63, dtype=np.uint64), 0)

    def config(self):
        return {"p": self.p}

    def _forward(self, x):
        if not self.training or self.p == 0:
            self._mask = None
            return x
        y, self._mask = np.empty_like(x), np.empty_like(x)
        _dropout.dropout_forward(y.reshape(-1), self._mask.reshape(-1), x.reshape(-1), self.p,
                                 self.rng_state)
        return y

    def _backward(self, grad):
        if self._mask is None:
            return grad
        dx = np.empty_like(grad)
        _dropout.dropout_backward(dx.reshape(-1), grad.reshape(-1), self._mask.reshape(-1))
        return dx


class BatchNorm1d(Layer):
    """Batch normalisation of each feature over the batch (PyTorch's BatchNorm1d on 2-D input).

    Training normalises with the batch's mean and biased variance and updates the running
    estimates (unbiased variance) with `momentum` (None: a cumulative average); evaluation
    uses the running estimates. affine adds a learned scale (weight, init 1) and shift
    (bias, init 0)."""

    op = "batchnorm"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        self.num_features = check_positive_int("num_features", num_features)
        self.eps = check_number("eps", eps, "a positive number", lambda v: v > 0)
        self.momentum = None if momentum is None else check_number(
            "momentum", momentum, "a number in [0, 1] or None", lambda v: 0.0 <= v <= 1.0)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.weight = self.bias = self.running_mean = self.running_var = None
        self.num_batches_tracked = np.zeros(1, np.int64)

    def param_shapes(self):
        return {"weight": (self.num_features,), "bias": (self.num_features,)} if self.affine else {}

    def buffer_shapes(self):
        if not self.track_running_stats:
            return {}
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def bind(self, parameters, buffers, rng):
        self.weight, self.bias = parameters.get("weight"), parameters.get("bias")
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0
        self.running_mean, self.running_var = buffers.get("running_mean"), buffers.get("running_var")
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1

    def output_width(self, in_features):
        if in_features is not None and in_features != self.num_features:
            raise ValueError(f"{self!r}: expected {self.num_features} input features, "
                             f"the previous layer gives {in_features}")
        return self.num_features

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}

    def _check_input(self, x):
        x = super()._check_input(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"x: expected {self.num_features} features, got {x.shape[1]}")
        if self.training and x.shape[0] < 2:
            raise ValueError("x: BatchNorm1d needs more than 1 row per batch in training "
                             "(the batch variance of one row is 0)")
        return x

    def _forward(self, x):
        n = self.num_features
        y, self._xhat = np.empty_like(x), np.empty_like(x)
        self._mean, self._invstd = np.empty(n, x.dtype), np.empty(n, x.dtype)
        _batchnorm.batchnorm_forward(
            y, self._xhat, self._mean, self._invstd, self.running_mean, self.running_var,
            self.num_batches_tracked if self.track_running_stats else None, x,
            self.weight.data if self.affine else None, self.bias.data if self.affine else None,
            self.eps, -1.0 if self.momentum is None else self.momentum, self.training)
        return y

    def _backward(self, grad):
        if not self.training and self.track_running_stats:
            # Evaluation mode is an affine map per feature: dx = dy * gamma * invstd.
            scale = self._invstd * (self.weight.data if self.affine else 1)
            if self.affine:
                self.weight.grad += (grad * self._xhat).sum(axis=0)
                self.bias.grad += grad.sum(axis=0)
            return grad * scale
        dx = np.empty_like(grad)
        sums = np.empty(2 * self.num_features, grad.dtype)
        _batchnorm.batchnorm_backward(
            dx, self.weight.grad if self.affine else None, self.bias.grad if self.affine else None,
            sums, grad, self._xhat, self._invstd, self.weight.data if self.affine else None, True)
        return dx
