"""Weight initialisers for Dense layers, by name.

"torch"  PyTorch's Linear default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))
"he"     He / Kaiming normal for ReLU nets: weight ~ N(0, 2/in), bias 0
"xavier" Glorot / Xavier uniform: weight ~ U(±sqrt(6/(in+out))), bias 0
"normal" weight ~ N(0, 0.01²), bias 0
"zeros"  everything 0 (a teaching example of symmetric weights that never break symmetry)
"""
import math

__all__ = ["INITIALIZERS", "initialize"]


def _torch(rng, weight, bias, fan_in, fan_out):
    bound = 1.0 / math.sqrt(fan_in)
    weight[...] = rng.uniform(-bound, bound, weight.shape)
    if bias is not None:
        bias[...] = rng.uniform(-bound, bound, bias.shape)


def _he(rng, weight, bias, fan_in, fan_out):
    weight[...] = rng.normal(0.0, math.sqrt(2.0 / fan_in), weight.shape)


def _xavier(rng, weight, bias, fan_in, fan_out):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    weight[...] = rng.uniform(-bound, bound, weight.shape)


def _normal(rng, weight, bias, fan_in, fan_out):
    weight[...] = rng.normal(0.0, 0.01, weight.shape)


def _zeros(rng, weight, bias, fan_in, fan_out):
    weight[...] = 0


INITIALIZERS = {"torch": _torch, "he": _he, "xavier": _xavier, "normal": _normal,
                "zeros": _zeros}


def initialize(name, rng, weight, bias):
    """Fill weight (out, in) and bias (out,) or None in place with the named scheme."""
    if bias is not None:
        bias[...] = 0
    fan_out, fan_in = weight.shape
    INITIALIZERS[name](rng, weight, bias, fan_in, fan_out)
