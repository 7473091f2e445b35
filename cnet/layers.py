"""Layers: Dense (alias Linear) and the activations.

A layer is a pair of functions, `forward` and `backward`, over (batch, features) arrays.
Parameters live in the owning model's flat arena (see model.py); a layer holds views.
`forward` keeps what `backward` needs; `backward` accumulates parameter gradients
(PyTorch's accumulate-until-zero_grad) and returns the gradient w.r.t. its input.
"""
import math

import numpy as np

from cnet import _activations, _dense
from cnet._validation import FLOAT_DTYPES, check_positive_int

__all__ = ["Layer", "Dense", "Linear", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
           "Step", "Softmax"]


class Layer:
    """Base class. Subclasses without parameters only implement `_forward` / `_backward`."""

    training = True

    def param_shapes(self):
        """{name: shape} of the parameters this layer needs in the arena."""
        return {}

    def bind(self, parameters, rng):
        """Receive this layer's Parameter views (from the model's arena) and initialise them."""

    def output_width(self, in_features):
        """The number of output features for `in_features` inputs (None: any width)."""
        return in_features

    def config(self):
        """Constructor arguments, enough to rebuild the layer (used by save/load)."""
        return {}

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
        grad = np.asarray(grad_output)
        if grad.shape != out.shape:
            raise ValueError(f"grad_output: expected shape {out.shape}, got {grad.shape}")
        grad = np.ascontiguousarray(grad, dtype=out.dtype)
        return self._backward(grad)

    def _check_input(self, x):
        if not isinstance(x, np.ndarray) or x.dtype not in FLOAT_DTYPES or x.ndim != 2:
            raise TypeError(f"x: expected a 2-D float32 or float64 array, got "
                            f"{type(x).__name__} {getattr(x, 'dtype', '')} "
                            f"{getattr(x, 'shape', '')}")
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one row")
        return np.ascontiguousarray(x)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer: y = x @ weight.T + bias, weight of shape (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True):
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.use_bias = bool(bias)
        self.weight = None
        self.bias = None

    def param_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.use_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def bind(self, parameters, rng):
        self.weight = parameters["weight"]
        self.bias = parameters.get("bias")
        self.reset_parameters(rng)

    def reset_parameters(self, rng):
        # PyTorch's Linear: kaiming_uniform(a=sqrt(5)) reduces to U(-1/sqrt(in), 1/sqrt(in)).
        bound = 1.0 / math.sqrt(self.in_features)
        for p in (self.weight, self.bias):
            if p is not None:
                p.data[...] = rng.uniform(-bound, bound, p.shape)

    def output_width(self, in_features):
        if in_features is not None and in_features != self.in_features:
            raise ValueError(f"{self!r}: expected {self.in_features} input features, "
                             f"the previous layer gives {in_features}")
        return self.out_features

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.use_bias}

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
        self.negative_slope = float(negative_slope)
        if not math.isfinite(self.negative_slope):
            raise ValueError(f"negative_slope: expected a finite number, got {negative_slope!r}")

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
        if dim not in (1, -1):
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
