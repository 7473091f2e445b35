"""Fuzzing the public API with hostile arguments (issue 6).

cnet's kernels run without bounds checks: every argument is validated in cnet/ before a
kernel sees it. These property-based tests attack every public entry point with wrong ranks
and shapes, zero-size arrays, non-contiguous, Fortran-ordered, reversed, read-only and
unaligned views, every numpy dtype (object, bool, complex, float16, str, bytes, datetime...),
NaN, ±inf, 1e308, hostile labels, batch sizes and hyper-parameters, Python lists and scalars.

The property, for every call:
- it returns a correct result, and for inputs that make sense (real numbers of a dtype cnet
  converts: any integer dtype, float32, float64, in any memory layout) the result is exactly
  the one of the C-contiguous copy in the dtype cnet computes in; or
- it raises ValueError or TypeError whose message names the offending argument;
- never another exception type, a crash, a hang or a silent wrong result.

A crash in compiled code would kill this process; test_fuzz_campaign_in_a_subprocess runs a
short campaign under `python -X faulthandler` in a child process, so a segfault is reported
as a failure (a negative return code) with the faulting stack.

Bounded in CI by the "ci" hypothesis profile (tests/conftest.py); the long campaign is
    HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py
"""
import gzip
import io
import math
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnet
from cnet import data, metrics, optim
from cnet.callbacks import Callback
from cnet.layers import (BatchNorm1d, Dense, Dropout, Identity, LeakyReLU, ReLU, Sigmoid,
                         Softmax, Step, Tanh)
from cnet.losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss,
                         MSELoss, TripletMarginLoss)
from cnet.model import Sequential
from cnet.trainer import Trainer

# The subprocess campaign (below) sets CNET_FUZZ_EXAMPLES to run every target briefly.
if os.environ.get("CNET_FUZZ_EXAMPLES"):
    settings.register_profile("fuzz-subprocess", max_examples=int(os.environ["CNET_FUZZ_EXAMPLES"]),
                              deadline=None, suppress_health_check=list(HealthCheck))
    settings.load_profile("fuzz-subprocess")

# Keep hypothesis quiet about the large composite strategies.
fuzz = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

REJECTED = object()     # what `call` returns when the call raised an allowed, named error


def call(names, fn, *args, **kwargs):
    """fn(*args, **kwargs), or REJECTED when it raised ValueError/TypeError whose message
    names one of `names`. Any other exception (or an unnamed error) fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # overflow in user data, KLDivLoss 'mean', ...
            result = fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert any(name in message for name in names), (
            f"{type(exc).__name__} does not name any of {names}: {message}")
        _note(f"rejected: {type(exc).__name__}: {message}")
        _event(f"{_name(fn)}: rejected, {message.split(':')[0][:40]}")
        return REJECTED
    _event(f"{_name(fn)}: accepted")
    return result


def _note(text):
    try:
        note(text)
    except Exception:   # outside a hypothesis test
        pass


def _name(fn):
    return getattr(fn, "__name__", type(fn).__name__)


def _event(text):
    try:
        event(text)
    except Exception:   # outside a hypothesis test
        pass


def assert_same(a, b, path="result"):
    """Bit-identical results (NaN equal to NaN), through tuples, lists, dicts and Histories."""
    if a is REJECTED or b is REJECTED:
        assert a is b, f"{path}: one call was rejected and the other was not"
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.shape == b.shape and a.dtype == b.dtype, (path, a.shape, b.shape, a.dtype,
                                                           b.dtype)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM"), path
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, cnet.History):
        assert_same(a.history, b.history, path + ".history")
    elif isinstance(a, float):
        assert isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b))), (
            path, a, b)
    else:
        assert a == b, (path, a, b)


def same_bytes(a, b):
    """The same elements, bit for bit (any dtype: NaN, NaT and objects included)."""
    return a.shape == b.shape and a.astype(b.dtype).tobytes() == b.tobytes()


# ---- hostile values ---------------------------------------------------------------------------

# Dtypes cnet converts (real numbers) and dtypes it must refuse.
CONVERTED = [np.float64, np.float32, np.int8, np.int16, np.int32, np.int64, np.uint8,
             np.uint16, np.uint32, np.uint64]
REFUSED = [np.bool_, np.float16, np.longdouble, np.complex64, np.complex128, "U3", "S3",
           "datetime64[ns]", "timedelta64[s]", object]
LAYOUTS = ["C", "F", "strided", "reversed", "readonly", "unaligned", "big-endian"]
SANE_LAYOUTS = LAYOUTS[:-1]


def converted_kind(arr):
    """'real' for an ndarray of a dtype cnet converts (native byte order), 'refused' for
    one it must refuse, 'either' for byte-swapped real numbers (convert or refuse)."""
    if arr.dtype.kind in "iuf" and not arr.dtype.isnative and arr.dtype.itemsize in (2, 4, 8) \
            and arr.dtype.newbyteorder("=") in [np.dtype(d) for d in CONVERTED]:
        return "either"
    if arr.dtype.kind in "iu" or arr.dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        return "real"
    return "refused"


def with_layout(arr, layout):
    """The same values as arr, in another memory layout."""
    if arr.ndim == 0 or arr.size == 0:
        return arr
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "strided":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
        big[..., ::2] = arr
        return big[..., ::2]
    if layout == "reversed":
        return arr[::-1].copy()[::-1]
    if layout == "readonly":
        out = arr.copy()
        out.flags.writeable = False
        return out
    if layout == "unaligned" and arr.dtype.kind in "iuf" and arr.itemsize > 1:
        buffer = np.zeros(arr.nbytes + 1, np.uint8)
        out = np.frombuffer(buffer[1:].data, dtype=arr.dtype, count=arr.size).reshape(arr.shape)
        out[...] = arr
        return out
    if layout == "big-endian" and arr.dtype.kind in "iuf" and arr.itemsize > 1:
        return arr.astype(arr.dtype.newbyteorder(">"))
    return arr


SPECIAL = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, 3.4e38]


def float_elements(width=64, special=True):
    normal = st.floats(-10, 10, allow_nan=False, width=width)
    if not special:
        return normal
    specials = [v for v in SPECIAL if width == 64 or abs(v) < 3.4e38 or not np.isfinite(v)]
    return st.one_of(normal, normal, normal, st.sampled_from(specials).map(
        lambda v: float(np.float32(v)) if width == 32 else v), st.floats(width=width))


@st.composite
def arrays(draw, shape, dtypes=None, special=True, layouts=LAYOUTS, ints=None):
    """An ndarray of `shape` (a tuple or a strategy) with hostile dtype, values and layout;
    ints=(low, high) bounds integer values (e.g. valid class indices)."""
    if not isinstance(shape, tuple):
        shape = draw(shape)
    dtype = np.dtype(draw(st.sampled_from(dtypes or CONVERTED + REFUSED)))
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        elements = float_elements(8 * dtype.itemsize, special)
        if ints is not None:
            elements = st.integers(*ints).map(float)
    elif dtype.kind == "f":
        elements = st.floats(width=16) if dtype.itemsize == 2 else st.floats(-10, 10)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = ints or (-3, 12)
        elements = st.integers(max(low, info.min), min(high, info.max))
        if special and ints is None:
            elements = st.one_of(elements, st.sampled_from([info.min, info.max]))
    elif dtype.kind == "O":
        elements = st.sampled_from([None, "a", 1.5, 2, [1], {}])
        values = draw(st.lists(elements, min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape))))
        arr = np.empty(int(np.prod(shape)), object)
        arr[:] = values
        return arr.reshape(shape)
    else:
        elements = None
    arr = draw(hnp.arrays(dtype, shape, elements=elements))
    return with_layout(arr, draw(st.sampled_from(layouts)))


def shapes(max_dims=3, max_side=5):
    return hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)


JUNK = [None, 0, 1, -1, 1.5, True, "x", b"x", 1j, [], [[]], [[1, 2], [3]], {}, {"a": 1},
        object(), np.float64(1.0), [1.0, "a"], [[1.0, None]], (1, 2)]


def hostile(shape, dtypes=None, special=True):
    """Arrays of `shape` of any dtype and layout (NaN, inf and huge values included), of
    another shape, or lists and junk."""
    dtypes = dtypes or CONVERTED + REFUSED
    sensible = arrays(shape, [d for d in dtypes if d in CONVERTED] or dtypes, special=False)
    anything = arrays(shape, dtypes, special)
    return st.one_of(anything, anything, anything, arrays(shapes(), dtypes, special),
                     sensible.map(lambda a: a.tolist()), st.sampled_from(JUNK))


class Args:
    """Draws one example's arguments. In a 'sane' example every argument is valid, in any
    integer or float dtype and memory layout (so the result is checked against the
    C-contiguous copies: such inputs must work); in a 'hostile' example any argument may be
    anything."""

    def __init__(self, data_):
        self.data = data_
        self.sane = data_.draw(st.booleans(), label="sane")

    def __call__(self, strategy, label):
        return self.data.draw(strategy, label=label)

    def array(self, shape, label, dtypes=None, special=True, ints=None):
        dtypes = dtypes or CONVERTED + REFUSED
        if self.sane:
            return self(arrays(shape, [d for d in dtypes if d in CONVERTED], special=False,
                               layouts=SANE_LAYOUTS, ints=ints), label)
        return self(st.one_of(arrays(shape, dtypes, special, ints=ints), hostile(shape, dtypes,
                                                                                special)), label)

    def value(self, good, bad, label):
        if self.sane:
            return self(st.sampled_from(good), label)
        return self(st.one_of(st.sampled_from(good), st.sampled_from(bad)), label)

    def rows(self, label="rows", high=5):
        return self(st.integers(1 if self.sane else 0, high), label)


def canonical(x, dtype=None):
    """The C-contiguous copy of a sensible input, in the dtype cnet computes in (its own
    dtype when None). Not np.ascontiguousarray, which makes 0-d arrays 1-d."""
    return np.array(np.asarray(x), dtype=dtype, order="C", copy=True)


def is_real_array(x):
    return isinstance(x, np.ndarray) and converted_kind(x) == "real"


def refused(*values):
    return any(isinstance(x, np.ndarray) and converted_kind(x) == "refused" for x in values)


HOSTILE_SCALARS = [0, 1, 2, -1, 0.5, -0.5, 0.0, 1e-300, 1e308, -1e308, math.nan, math.inf,
                   -math.inf, True, False, None, "1", "abc", "", 1j, [1], (1,), {}, b"1",
                   np.float32(0.5), np.float64(0.1), np.int64(3), np.uint8(2), np.array(1.0),
                   np.array([1.0, 2.0]), np.bool_(True), 2 ** 70, -2 ** 70, object()]
dtypes_st = st.sampled_from(["float32", "float64"])

# ---- layers and Sequential --------------------------------------------------------------------

LAYER_FACTORIES = {
    "Dense": lambda: Dense(3, 3), "Identity": Identity, "ReLU": ReLU,
    "LeakyReLU": lambda: LeakyReLU(0.1), "Sigmoid": Sigmoid, "Tanh": Tanh, "Softmax": Softmax,
    "Step": Step, "Dropout": lambda: Dropout(0.3), "BatchNorm1d": lambda: BatchNorm1d(3),
}


def model_state(model):
    """Everything forward/backward may change, to restore between two calls."""
    arrays_ = [model.flat_data, model.flat_grad, model.flat_buffers]
    arrays_ += [getattr(layer, name) for layer in model.layers
                for name in ("rng_state", "num_batches_tracked") if hasattr(layer, name)]
    return arrays_, [a.copy() for a in arrays_]


def restore(state):
    for live, saved in zip(*state):
        live[...] = saved


@fuzz
@given(kind=st.sampled_from(sorted(LAYER_FACTORIES)), dtype=dtypes_st, training=st.booleans(),
       data_=st.data())
def test_layer_forward_backward(kind, dtype, training, data_):
    layer = LAYER_FACTORIES[kind]()
    model = Sequential(Dense(3, 3), layer, dtype=dtype, seed=0).train(training)
    # A layer takes float32 or float64 (its parameters' dtype when it has parameters) in
    # any layout, and computes in that dtype; other dtypes are refused, never converted.
    takes = ([np.dtype(dtype)] if kind in ("Dense", "BatchNorm1d")
             else [np.dtype(np.float32), np.dtype(np.float64)])
    args = Args(data_)
    rows = args.rows()
    x = args.array((rows, 3), "x", dtypes=takes * 4 + CONVERTED + REFUSED)
    state = model_state(model)
    out = call(["x"], layer.forward, x)
    right_dtype = isinstance(x, np.ndarray) and x.dtype in takes
    if right_dtype and x.shape == (rows, 3) and rows >= (
            2 if kind == "BatchNorm1d" and training else 1):
        assert out is not REJECTED
        after = model_state(model)
        restore(state)
        assert_same(out, layer.forward(canonical(x)))
        restore(after)
    elif not (right_dtype and x.ndim == 2):
        assert out is REJECTED, f"x of {getattr(x, 'dtype', type(x))} was accepted"
    if out is REJECTED:
        return
    grad = args.array(out.shape, "grad_output")
    state = model_state(model)
    dx = call(["grad_output", "Step"], layer.backward, grad)
    if kind == "Step":
        assert dx is REJECTED
    elif is_real_array(grad) and grad.shape == out.shape:
        assert dx is not REJECTED
        restore(state)
        assert_same(dx, layer.backward(canonical(grad, out.dtype)))
    elif refused(grad):
        assert dx is REJECTED, f"grad_output of dtype {grad.dtype} was accepted"


def small_model(dtype, out=2, extra=()):
    return Sequential(Dense(3, 4), *extra, ReLU(), Dense(4, out), dtype=dtype, seed=1)


@fuzz
@given(dtype=dtypes_st, training=st.booleans(), data_=st.data())
def test_sequential_forward_backward(dtype, training, data_):
    model = small_model(dtype, extra=(BatchNorm1d(4), Dropout(0.2))).train(training)
    args = Args(data_)
    rows = args.rows()
    x = args.array((rows, 3), "x")
    state = model_state(model)
    out = call(["x"], model.forward, x)
    if is_real_array(x) and x.shape == (rows, 3) and rows >= 1:
        # Converted, not rejected: the same as the C-contiguous copy in the model's dtype.
        with np.errstate(over="ignore"):
            finite = np.isfinite(canonical(x, dtype)).all()
        after = model_state(model)
        restore(state)
        assert_same(out, call(["x"], model.forward, canonical(x, dtype)))
        if finite and (rows >= 2 or not training):
            assert out is not REJECTED
        restore(after)
    elif refused(x):
        assert out is REJECTED
    if out is REJECTED:
        return
    grad = args.array(out.shape, "grad_output")
    state = model_state(model)
    dx = call(["grad_output"], model.backward, grad)
    if is_real_array(grad) and grad.shape == out.shape:
        assert dx is not REJECTED
        grads = model.flat_grad.copy()
        restore(state)
        assert_same(dx, model.backward(canonical(grad, dtype)))
        assert_same(grads, model.flat_grad)
    elif refused(grad):
        assert dx is REJECTED


@fuzz
@given(dtype=dtypes_st, data_=st.data())
def test_load_state_dict(dtype, data_):
    model = small_model(dtype, extra=(BatchNorm1d(4),))
    reference = model.state_dict()
    args = Args(data_)
    state = {}
    for key, value in reference.items():
        action = args.value(["keep"], ["hostile", "drop", "reshape"], key)
        if action == "keep":   # any real dtype and layout: converted
            state[key] = args(arrays(value.shape, CONVERTED, special=False), key)
        elif action == "hostile":
            state[key] = args(hostile(value.shape), key)
        elif action == "reshape":
            state[key] = args(arrays(shapes(), CONVERTED), key)
    if args.value([False], [True], "unexpected key"):
        state["9.weight"] = np.zeros(3)
    strict = args(st.booleans(), "strict")
    container = args.value([dict], [list, "junk"], "container")
    argument = (state if container is dict else list(state.items()) if container is list
                else args(st.sampled_from(JUNK), "junk"))
    before = model.state_dict()
    result = call(["state_dict"], model.load_state_dict, argument, strict=strict)
    if args.sane:
        assert result is not REJECTED
    if result is REJECTED:
        assert_same(model.state_dict(), before)      # nothing written before every check
        return
    after = model.state_dict()
    if container == "junk":     # a mapping, with strict=False: nothing to load
        assert isinstance(argument, dict) and not strict
        assert_same(after, before)
        return
    assert container is dict
    for key, value in after.items():
        expected = canonical(state[key], value.dtype).reshape(value.shape) \
            if key in state else before[key]
        assert_same(value, expected, key)


# ---- losses -----------------------------------------------------------------------------------

def build_loss(args, name):
    """A loss of class `name` with valid (sane) or hostile options."""
    weight = args.value([None], [None], "weight?")
    if not args.sane:
        weight = args(st.one_of(st.none(), arrays((3,), CONVERTED, special=False),
                                arrays(shapes(2, 3)), st.sampled_from(HOSTILE_SCALARS)), "weight")
    else:
        weight = args(st.one_of(st.none(), arrays((3,), CONVERTED, special=False,
                                                  layouts=SANE_LAYOUTS, ints=(0, 5))), "weight")
    reduction = args.value(["mean", "sum", "none"], HOSTILE_SCALARS + ["max"], "reduction")
    scalar = lambda good, label: args.value(good, HOSTILE_SCALARS, label)  # noqa: E731
    if name == "CrossEntropyLoss":
        return CrossEntropyLoss(weight=weight, ignore_index=scalar([-100, -1, 2], "ignore_index"),
                                reduction=reduction,
                                label_smoothing=scalar([0.0, 0.1, 1.0], "label_smoothing"))
    if name in ("MSELoss", "L1Loss"):
        return getattr(cnet, name)(reduction=reduction)
    if name == "HuberLoss":
        return HuberLoss(reduction=reduction, delta=scalar([1.0, 0.5, 1e308], "delta"))
    if name == "BCELoss":
        return BCELoss(weight=weight, reduction=reduction)
    if name == "BCEWithLogitsLoss":
        pos_weight = args(st.one_of(st.none(), arrays((3,), CONVERTED, special=False,
                                                      layouts=SANE_LAYOUTS)), "pos_weight")
        return BCEWithLogitsLoss(weight=weight, reduction=reduction, pos_weight=pos_weight)
    return KLDivLoss(reduction=args.value(["batchmean", "sum", "none", "mean"], ["max", None],
                                          "reduction"),
                     log_target=scalar([False, True, np.bool_(True)], "log_target"))


LOSS_NAMES = ["weight", "ignore_index", "reduction", "label_smoothing", "delta", "pos_weight",
              "log_target"]
ELEMENTWISE = ["MSELoss", "L1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss"]


@fuzz
@given(name=st.sampled_from(["CrossEntropyLoss"] + ELEMENTWISE), dtype=dtypes_st,
       data_=st.data())
def test_loss_call_and_backward(name, dtype, data_):
    args = Args(data_)
    loss_fn = call(LOSS_NAMES, build_loss, args, name)
    if loss_fn is REJECTED:
        assert not args.sane
        return
    rows = args.rows()
    floats = [np.dtype(dtype)]
    output = args.array((rows, 3), "output", dtypes=floats * 6 + CONVERTED + REFUSED)
    if name == "BCELoss" and args.sane and isinstance(output, np.ndarray):
        output = np.abs(np.tanh(output))     # probabilities in [0, 1]
    soft = name == "CrossEntropyLoss" and args(st.booleans(), "soft labels")
    if name == "CrossEntropyLoss" and not soft:
        others = REFUSED if args.sane else CONVERTED + REFUSED    # float labels are refused
        target = args.array((rows,), "target", dtypes=[np.int64, np.int32, np.uint8] * 3
                            + others, ints=(0, 2))
    elif soft:
        target = args.array((rows, 3), "target", dtypes=floats * 6 + CONVERTED + REFUSED)
    else:
        target = args.array((rows, 3), "target")
        if name == "BCELoss" and args.sane and isinstance(target, np.ndarray):
            target = np.clip(target, 0, 1)       # probabilities in [0, 1], its dtype kept
    names = ["output", "target", "weight", "pos_weight", "ignore_index"]
    value = call(names, loss_fn, output, target)
    grad = None if value is REJECTED else loss_fn.backward()
    # The same call on the C-contiguous copies (output in its float dtype, target in the
    # dtype the loss converts it to) gives the same loss and gradient.
    if isinstance(output, np.ndarray) and output.dtype in floats and is_real_array(target):
        if name == "CrossEntropyLoss" and target.shape != output.shape:
            ref_target = canonical(target)
        elif name == "CrossEntropyLoss" and target.dtype.kind in "iu":
            ref_target = target     # class probabilities must be floats: refused either way
        else:
            ref_target = canonical(target, output.dtype)
        expected = call(names, loss_fn, canonical(output), ref_target)
        assert_same(value, expected)
        if expected is not REJECTED:
            assert_same(grad, loss_fn.backward())
        if args.sane and output.shape == (rows, 3) and not soft:
            assert value is not REJECTED
    if refused(output, target):
        assert value is REJECTED, "a refused dtype was accepted"
    if value is REJECTED:
        return
    upstream = args.array(np.shape(value), "grad_output")
    scaled = call(["grad_output"], loss_fn.backward, upstream)
    if is_real_array(upstream) and upstream.shape == np.shape(value):
        assert scaled is not REJECTED
        assert_same(scaled, loss_fn.backward(canonical(upstream, grad.dtype)))


def test_loss_backward_before_a_call_is_a_clear_error():
    for cls in (CrossEntropyLoss, MSELoss, TripletMarginLoss):
        with pytest.raises(RuntimeError, match="first"):
            cls().backward()


@fuzz
@given(dtype=dtypes_st, data_=st.data())
def test_triplet_margin_loss(dtype, data_):
    args = Args(data_)
    loss_fn = call(["margin", "p", "eps", "swap", "reduction"], TripletMarginLoss,
                   margin=args.value([1.0, 0.5], HOSTILE_SCALARS, "margin"),
                   p=args.value([1.0, 2.0, 3.0, math.inf], HOSTILE_SCALARS, "p"),
                   eps=args.value([1e-6, 0.0], HOSTILE_SCALARS, "eps"),
                   swap=args.value([False, True], HOSTILE_SCALARS, "swap"),
                   reduction=args.value(["mean", "sum", "none"], ["max", None], "reduction"))
    if loss_fn is REJECTED:
        assert not args.sane
        return
    shape = args.value([(3, 4), (4,), (1, 1)], [(0, 4), (2, 3, 4), ()], "shape")
    floats = [np.dtype(dtype)]
    inputs = [args.array(shape, name, dtypes=floats * 6 + CONVERTED + REFUSED)
              for name in ("anchor", "positive", "negative")]
    value = call(["anchor", "positive", "negative"], loss_fn, *inputs)
    if all(isinstance(x, np.ndarray) and x.dtype in floats and x.shape == shape
           for x in inputs) and 0 not in shape and len(shape) in (1, 2):
        assert value is not REJECTED
        grads = loss_fn.backward()
        assert_same(value, loss_fn(*[canonical(x) for x in inputs]))
        assert_same(grads, loss_fn.backward())
    if refused(*inputs):
        assert value is REJECTED


# ---- optimizers -------------------------------------------------------------------------------

OPTIMIZERS = {
    optim.SGD: {"lr": [0.1, 1], "momentum": [0.0, 0.9], "dampening": [0.0, 0.5],
                "weight_decay": [0.0, 0.01], "nesterov": [False, np.bool_(False)]},
    optim.Adam: {"lr": [1e-3, np.float32(0.01)], "betas": [(0.9, 0.999), [0.5, 0.5], (0, 0)],
                 "eps": [1e-8, 0], "weight_decay": [0, 0.1], "amsgrad": [False, True]},
    optim.AdamW: {"lr": [1e-3, np.float64(0.1)], "betas": [(0.9, 0.999), (np.float32(0.8), 0.9)],
                  "eps": [1e-8], "weight_decay": [0.01, 0], "amsgrad": [False, True]},
    optim.Adagrad: {"lr": [0.01, 1], "lr_decay": [0.0, 0.1], "weight_decay": [0.0, 0.1],
                    "initial_accumulator_value": [0.0, 0.5], "eps": [1e-10, 1]},
    optim.RMSprop: {"lr": [0.01, 2], "alpha": [0.99, 0, 1], "eps": [1e-8], "weight_decay": [0.0],
                    "momentum": [0.0, 0.9], "centered": [False, True]},
    optim.LBFGS: {"lr": [1.0, 0.5], "max_iter": [20, 2, np.int64(3)], "max_eval": [None, 5],
                  "tolerance_grad": [1e-7], "tolerance_change": [1e-9],
                  "history_size": [100, 1], "line_search_fn": [None, "strong_wolfe"]},
}
HYPER_VALUES = HOSTILE_SCALARS + [(0.9, 0.999), [0.5, 0.5], (1.0, 0.5), (0.9,), ("a", "b"),
                                  (math.nan, 0.9), "strong_wolfe", 0.99, 10, 3]


def as_plain(value):
    """A hyper-parameter as plain Python numbers (what an accepted value must behave like)."""
    if isinstance(value, (tuple, list)):
        return tuple(as_plain(v) for v in value)
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


@fuzz
@given(cls=st.sampled_from(list(OPTIMIZERS)), dtype=dtypes_st, data_=st.data())
def test_optimizer_hyperparameters_and_step(cls, dtype, data_):
    args = Args(data_)
    names = list(OPTIMIZERS[cls])
    chosen = args(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True),
                  "hyper-parameters")
    hyper = {name: args.value(OPTIMIZERS[cls][name], HYPER_VALUES, name) for name in chosen}
    model = small_model(dtype)
    model.flat_grad[:] = np.random.default_rng(0).standard_normal(model.flat_grad.size)
    opt = call(names + ["params"], cls, model.parameters(), **hyper)
    if opt is REJECTED:
        assert not args.sane or (cls is optim.SGD and "nesterov" in str(hyper)) or (
            cls is optim.LBFGS and "max_eval" in hyper)
        return
    # An accepted value behaves as the plain Python number it stands for.
    twin_model = small_model(dtype)
    twin_model.flat_grad[:] = model.flat_grad
    twin = cls(twin_model.parameters(), **{k: as_plain(v) for k, v in hyper.items()})

    def closure(m):
        def f():
            m.flat_grad[:] = 2 * m.flat_data
            return float(np.dot(m.flat_data, m.flat_data))
        return f

    for _ in range(2):
        if cls is optim.LBFGS:
            opt.step(closure(model))
            twin.step(closure(twin_model))
        else:
            opt.step()
            twin.step()
    assert_same(model.flat_data, twin_model.flat_data)
    state = opt.state_dict()
    fresh = cls(small_model(dtype).parameters(), **hyper)
    loaded = call(["state_dict"], fresh.load_state_dict, state)
    if all(np.isfinite(v).all() for v in state["state"].values()):
        assert loaded is not REJECTED         # a diverged state (inf, NaN) is refused, by name
        assert_same(fresh.state_dict()["state"], state["state"])


LBFGS_DIVERGES = textwrap.dedent("""
    import warnings
    import numpy as np
    from cnet import Dense, ReLU, Sequential, optim
    warnings.simplefilter("ignore")
    for search in (None, "strong_wolfe"):
        for lr in (2.0 ** 70, 1e308, 1.0):
            model = Sequential(Dense(3, 4), ReLU(), Dense(4, 2), seed=1)

            def closure():
                model.flat_grad[:] = 2 * model.flat_data
                return float(np.dot(model.flat_data, model.flat_data))

            opt = optim.LBFGS(model.parameters(), lr=lr, max_iter=2 ** 70, max_eval=2 ** 70,
                              line_search_fn=search)
            for _ in range(3):
                opt.step(closure)
    print("finished")
""")


def test_lbfgs_that_diverges_stops():
    """Found by the fuzz campaign: with a huge lr the loss became NaN, NaN fails every
    stopping test, and LBFGS (its line search too) looped until max_iter/max_eval (2**70).
    In a child process, so that a regression fails instead of hanging the suite."""
    proc = subprocess.run([sys.executable, "-c", LBFGS_DIVERGES], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "finished" in proc.stdout, proc.stderr[-2000:]


@fuzz
@given(cls=st.sampled_from(list(OPTIMIZERS)), data_=st.data())
def test_optimizer_params_and_state_dict(cls, data_):
    model = small_model("float32")
    other = small_model("float32")
    params = data_.draw(st.sampled_from([
        [], [1, 2], "params", None, 3, model.flat_data, next(model.parameters()),
        list(model.parameters()) + list(other.parameters()),
        [{"params": []}], [{"lr": 0.1}], [{"params": list(model.parameters())}, 5],
        [{"params": list(model.parameters())[:2]}, {"params": list(model.parameters())[1:]}],
        list(model.parameters()) * 2]), label="params")
    assert call(["params"], cls, params) is REJECTED
    opt = cls(model.parameters())
    state = opt.state_dict()
    broken = data_.draw(st.sampled_from(["step", "param_groups", "state", "junk"]),
                        label="broken")
    if broken == "junk":
        state = data_.draw(st.sampled_from(JUNK), label="state_dict")
    else:
        state[broken] = data_.draw(st.sampled_from(
            JUNK + [-1, 2 ** 70, [{}], [{"params": ["x"]}], {"exp_avg": np.zeros(3)},
                    {"momentum_buffer": np.full(model.flat_data.size, np.nan)}]), label="value")
    before = opt.state_dict()
    if call(["state_dict"], opt.load_state_dict, state) is REJECTED:
        assert_same(opt.state_dict(), before)


# ---- Trainer ----------------------------------------------------------------------------------

BATCH_SIZES = ([1, 2, 3, 7, 100, None, np.int64(2)],
               [0, -1, 1.5, True, False, "2", 2 ** 70])
TRAINER_LOSSES = {
    "ce": (CrossEntropyLoss, 3, [np.int64, np.int32, np.uint8, np.int8], (0, 2)),
    "mse": (MSELoss, 1, CONVERTED, None),
    "bce": (BCEWithLogitsLoss, 2, [np.float32, np.float64, np.int64, np.uint8], (0, 1)),
}


def make_trainer(kind, dtype, opt="Adam"):
    loss_cls, out, _, _ = TRAINER_LOSSES[kind]
    model = small_model(dtype, out=out)
    return Trainer(model, loss_cls(), getattr(optim, opt)(model.parameters(), lr=0.01))


def draw_targets(args, kind, n):
    _, out, y_dtypes, ints = TRAINER_LOSSES[kind]
    shape = (n,) if kind != "bce" else (n, out)
    others = REFUSED if kind == "ce" else CONVERTED + REFUSED   # class indices: ints only
    return shape, args.array(shape, "y", dtypes=y_dtypes * 3 + others, ints=ints,
                             special=kind == "mse")


def comparable_targets(kind, y):
    """Targets fit converts (so the C-contiguous copy must give the same result): any real
    dtype, but class indices only from integer dtypes (float labels are refused)."""
    return is_real_array(y) and (kind != "ce" or y.dtype.kind in "iu")


@fuzz
@given(kind=st.sampled_from(sorted(TRAINER_LOSSES)), dtype=dtypes_st, data_=st.data())
def test_trainer_fit(kind, dtype, data_):
    args = Args(data_)
    n = args.rows("n", 9)
    X = args.array((n, 3), "X")
    y_shape, y = draw_targets(args, kind, n)
    kwargs = {
        "batch_size": args.value(*BATCH_SIZES, "batch_size"),
        "epochs": args.value([1, 2], [0, -1, 1.0, True, None, "1"], "epochs"),
        "seed": args.value([0, 1, None, np.int64(3)], [-1, 1.5, "x", [1, 2], True], "seed"),
        "validation_split": args.value([0.0, 0.2], [1.0, -0.1, math.nan, "0.2", True],
                                       "validation_split"),
        "callbacks": args.value([(), [Callback()]], [None, [1], 5, [Callback]], "callbacks"),
        "on_nan": args.value(["raise", "stop", "continue"], ["x", None], "on_nan"),
        "initial_epoch": args.value([0], [1, -1, 0.0, None], "initial_epoch"),
    }
    names = list(kwargs) + ["X", "y"]

    def fit(X, y):
        trainer = make_trainer(kind, dtype)
        try:
            history = call(names, trainer.fit, X, y, verbose=0, **kwargs)
        except FloatingPointError as exc:     # divergence (on_nan="raise"): named, documented
            assert "loss" in str(exc)
            history = "diverged"
        return history, trainer.model.flat_data.copy(), trainer.optimizer.step_count

    result = fit(X, y)
    if is_real_array(X) and X.shape == (n, 3) and comparable_targets(kind, y) \
            and y.shape == y_shape \
            and n >= 1 and kwargs["seed"] is not None:     # seed=None: other shuffles
        # Converted, not rejected: the C-contiguous copies in fit's dtypes train the same.
        y_ref = canonical(y, np.int64 if kind == "ce" else dtype)
        assert_same(result, fit(canonical(X, dtype), y_ref))
    if args.sane and kwargs["validation_split"] * n < n - 1:
        assert result[0] is not REJECTED
    if refused(X, y):
        assert result[0] is REJECTED
    if result[0] is REJECTED:
        assert_same(result[1], make_trainer(kind, dtype).model.flat_data)   # nothing trained


@fuzz
@given(kind=st.sampled_from(sorted(TRAINER_LOSSES)), dtype=dtypes_st,
       method=st.sampled_from(["predict", "predict_proba", "evaluate"]), data_=st.data())
def test_trainer_predict_evaluate(kind, dtype, method, data_):
    args = Args(data_)
    n = args.rows("n")
    inputs = [args.array((n, 3), "X")]
    if method == "evaluate":
        inputs.append(draw_targets(args, kind, n)[1])
    names = ["X", "y", "predict_proba"]
    result = call(names, getattr(make_trainer(kind, dtype), method), *inputs)
    if is_real_array(inputs[0]) and inputs[0].shape == (n, 3) and n >= 1 and (
            method != "evaluate" or comparable_targets(kind, inputs[1])):
        ref = [canonical(inputs[0], dtype)]
        if method == "evaluate":
            ref.append(canonical(inputs[1], np.int64 if kind == "ce" else dtype))
        assert_same(result, call(names, getattr(make_trainer(kind, dtype), method), *ref))
        if args.sane and not (method == "predict_proba" and kind == "mse"):
            assert result is not REJECTED
    if refused(*inputs):
        assert result is REJECTED


def test_trainer_constructor_rejects_hostile_arguments():
    model = small_model("float32")
    opt = optim.SGD(model.parameters())
    for value in HOSTILE_SCALARS:
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
                value, (bool, np.bool_)) and 0 < value < math.inf:
            continue
        if value is None:
            continue
        assert call(["max_grad_norm"], Trainer, model, MSELoss(), opt,
                    max_grad_norm=value) is REJECTED, value
    for args in [(None, MSELoss(), opt), (model, None, opt), (model, MSELoss(), None),
                 (model, MSELoss(), optim.SGD(small_model("float32").parameters())),
                 (model, "mse", opt), (model, MSELoss, opt), (model, TripletMarginLoss(), opt)]:
        assert call(["model", "loss", "optimizer"], Trainer, *args) is REJECTED


# ---- data helpers -----------------------------------------------------------------------------

@fuzz
@given(data_=st.data())
def test_train_test_split(data_):
    args = Args(data_)
    n = args.rows("n", 8) + args.sane        # two rows at least, to split
    X = args.array((n, 2), "X")
    y = args(st.one_of(st.just(np.arange(n)), hostile((n,))), "y") if not args.sane \
        else np.arange(n)
    kwargs = {
        "test_size": args.value([0.25, 0.5, 1, None], [2, 0, 0.0, 1.0, n, -1, math.nan, "0.5",
                                                       True], "test_size"),
        "seed": args.value([0, None, np.random.default_rng(1)], [-1, "x", 1.5], "seed"),
        "shuffle": args(st.booleans(), "shuffle"),
    }
    if kwargs["shuffle"] and args.value([False, True], [True], "stratify?"):
        kwargs["stratify"] = args(st.one_of(st.just(np.arange(n) % 2), hostile((n,))),
                                  "stratify")
    result = call(["X", "y", "test_size", "seed", "stratify"], data.train_test_split, X, y,
                  **kwargs)
    if result is REJECTED:
        assert not args.sane or "stratify" in kwargs
        return
    X_train, X_test, y_train, y_test = result
    X_arr = np.asarray(X)
    assert len(X_train) + len(X_test) == len(X_arr) and len(X_test) >= 1 and len(X_train) >= 1
    assert len(y_train) == len(X_train) and len(y_test) == len(X_test)
    if isinstance(y, np.ndarray) and y.dtype == np.int64 and np.array_equal(y, np.arange(n)):
        # A partition of the rows, each X row with its y row.
        assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(n))
        assert same_bytes(np.concatenate([X_train, X_test]),
                          X_arr[np.concatenate([y_train, y_test])])


@fuzz
@given(data_=st.data())
def test_iterate_minibatches(data_):
    args = Args(data_)
    n = args.rows("n", 8)
    X = args.array((n, 2), "X")
    y = np.arange(n) if args.sane else args(st.one_of(st.just(np.arange(n)), hostile((n,))),
                                            "y")
    batch_size = args.value(*BATCH_SIZES, "batch_size")
    shuffle = args(st.booleans(), "shuffle")
    seed = args.value([0, None], [-1, "x", 1.5], "seed")
    batches = call(["X", "y", "batch_size", "seed"], data.iterate_minibatches, X, y, batch_size,
                   shuffle=shuffle, seed=seed)
    if args.sane:
        assert batches is not REJECTED
    if batches is REJECTED:
        return
    batches = list(batches)
    size = len(np.asarray(X)) if batch_size is None else batch_size
    assert all(1 <= len(bx) == len(by) <= size for bx, by in batches)
    if isinstance(y, np.ndarray) and y.dtype == np.int64 and np.array_equal(y, np.arange(n)):
        seen = np.concatenate([by for _, by in batches]) if batches else np.zeros(0, int)
        assert sorted(seen.tolist()) == list(range(n))
        for bx, by in batches:
            assert same_bytes(np.asarray(bx), np.asarray(X)[by])


CSV_TOKENS = ["1", "0", "-2.5", "3e2", "nan", "inf", "-inf", "1e400", ",", ",", ",", "\n",
              "\n", "\r\n", " ", '"', '"1"', "a", "label", "#", "\x00", "\xff", "é", ";", "\t",
              "", "9" * 400, "1" * 30]


@fuzz
@given(data_=st.data())
def test_load_csv_hostile_files(tmp_path_factory, data_):
    args = Args(data_)
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    form = args.value(["table", "gzip"], ["tokens", "bytes", "bad-gzip", "truncated-gzip",
                                          "empty", "missing"], "form")
    table = None
    if form in ("table", "gzip"):
        table = args(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=4),
                                elements=st.floats(-1e6, 1e6) | st.integers(-5, 5)), "table")
        text = "\n".join(",".join(repr(float(v)) for v in row) for row in table) + "\n"
    else:
        text = "".join(args(st.lists(st.sampled_from(CSV_TOKENS), max_size=40), "text"))
    raw = {"tokens": text.encode("utf-8", "surrogatepass"), "table": text.encode(),
           "bytes": args(st.binary(max_size=60), "bytes"),
           "gzip": gzip.compress(text.encode()), "bad-gzip": b"\x1f\x8b" + text.encode(),
           "truncated-gzip": gzip.compress(text.encode() * 3)[:-9], "empty": b"",
           "missing": None}[form]
    if "gzip" in form:
        path = path.with_name("data.csv.gz")
    if raw is not None:
        path.write_bytes(raw)
    kwargs = {
        "label_column": args.value([-1, 0, None], [1, 5, -9, "label", 1.5, True],
                                   "label_column"),
        "delimiter": args.value([","], [";", '"', "", ",,", 1, None], "delimiter"),
        "header": args.value(["infer", False], [True, None, "x"], "header"),
        "dtype": args.value(["float32", "float64", "float16"], ["int64", "abc", None, object, 3],
                            "dtype"),
    }
    if form == "missing":
        with pytest.raises(FileNotFoundError):
            data.load_csv(path)
        return
    result = call([str(path), "label_column", "delimiter", "header", "dtype"],
                  data.load_csv, path, **kwargs)
    if args.sane:
        with np.errstate(over="ignore"):   # float16 holds only |x| < 65520
            fits = np.isfinite(table.astype(kwargs["dtype"])).all()
    if args.sane and fits and (table.shape[1] > 1 or kwargs["label_column"] is None):
        assert result is not REJECTED
    if result is REJECTED:
        return
    X, y = result
    assert isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] >= 1
    assert X.dtype == np.dtype(kwargs["dtype"]) and X.dtype.kind == "f"
    if y is not None:
        assert y.shape == (X.shape[0],)
    if args.sane:
        if kwargs["label_column"] is None:
            assert_same(X, table.astype(X.dtype))
        else:
            column = kwargs["label_column"] % table.shape[1]
            assert_same(X, np.delete(table, column, axis=1).astype(X.dtype))
            assert_same(y, table[:, column].astype(y.dtype))
            assert y.dtype == (np.int64 if (table[:, column] % 1 == 0).all() else X.dtype)


@fuzz
@given(data_=st.data())
def test_load_npz_hostile_files(tmp_path_factory, data_):
    args = Args(data_)
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    form = args.value(["arrays"], ["pickled", "bytes", "truncated", "npy", "zip-junk",
                                   "not-zip"], "form")
    n = args.rows("n", 4)
    if args.sane:
        arrays_ = {"X": args.array((n, 2), "X"), "y": args.array((n,), "y")}
    else:
        keys = args(st.lists(st.sampled_from(["X", "y", "Z"]), unique=True), "keys")
        arrays_ = {key: args(arrays(st.one_of(st.just((n, 2)[:1 + (key == "X")]), shapes(2, 4)),
                                    CONVERTED + REFUSED[:-1], layouts=["C", "F"]), key)
                   for key in keys}
    buffer = io.BytesIO()
    if form in ("arrays", "truncated"):
        np.savez(buffer, **arrays_)
    elif form == "pickled":
        arrays_ = {"y": np.array([1, 2])}
        np.savez(buffer, X=np.array([1, None], object), **arrays_)
    elif form == "npy":
        np.save(buffer, np.zeros(3))
    elif form == "zip-junk":
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("X.npy", b"\x93NUMPY junk")
            archive.writestr("y.npy", args(st.binary(max_size=40), "member"))
    elif form == "not-zip":
        buffer.write(b"PK\x03\x04" + args(st.binary(max_size=60), "tail"))
    else:
        buffer.write(args(st.binary(max_size=60), "bytes"))
    raw = buffer.getvalue()
    if form == "truncated":
        raw = raw[:args(st.integers(0, max(0, len(raw) - 1)), "cut")]
    path.write_bytes(raw)
    x_key = args.value(["X"], ["y", "Z", 3, None], "x_key")
    y_key = args.value(["y", None], ["X", "missing"], "y_key")
    result = call([str(path), "x_key", "y_key"], data.load_npz, path, x_key=x_key, y_key=y_key)
    if args.sane:
        assert result is not REJECTED
    if result is REJECTED:
        return
    X, y = result
    assert form in ("arrays", "pickled") and isinstance(X, np.ndarray)
    assert_same(X, arrays_[x_key])
    if y_key is not None:
        assert_same(y, arrays_[y_key])


# ---- metrics ----------------------------------------------------------------------------------

def reference_metric(name, a, b, p):
    """The textbook formula in float64 (NumPy), for inputs the metric accepts."""
    with np.errstate(all="ignore"):
        if name == "entropy":
            return -np.where(a == 0, 0, a * np.log(np.where(a == 0, 1, a))).sum(axis=-1)
        if name == "cross_entropy":
            return -np.where(a == 0, 0, a * np.log(np.where(a == 0, 1, b))).sum(axis=-1)
        if name == "kl_divergence":
            return reference_metric("cross_entropy", a, b, p) - reference_metric("entropy", a,
                                                                                  b, p)
        if name == "accuracy":
            return float(np.mean(a == b))
        if name == "hamming_distance":
            return np.count_nonzero(a != b, axis=-1)
        if name == "cosine_similarity":
            norms = np.maximum(np.linalg.norm(a, axis=-1), 1e-8) * np.maximum(
                np.linalg.norm(b, axis=-1), 1e-8)
            return (a * b).sum(axis=-1) / norms
        p = float({"l1_distance": 1, "l2_distance": 2, "linf_distance": math.inf}.get(name, p))
        diff = np.abs(a - b)
        if math.isinf(p):
            return diff.max(axis=-1)
        return (diff ** p).sum(axis=-1) ** (1 / p)


METRICS = ["entropy", "cross_entropy", "kl_divergence", "accuracy", "confusion_matrix",
           "l1_distance", "l2_distance", "linf_distance", "minkowski_distance",
           "cosine_similarity", "hamming_distance"]


@fuzz
@given(name=st.sampled_from(METRICS), data_=st.data())
def test_metrics(name, data_):
    args = Args(data_)
    shape = args.value([(3,), (2, 3), (4,)], [(0,), (), (2, 0)], "shape")
    probabilities = name in ("entropy", "cross_entropy", "kl_divergence")
    labels = name in ("confusion_matrix", "accuracy")

    def operand(label):
        if probabilities and args.sane:
            x = args(arrays(shape, [np.float64, np.float32], special=False), label)
            x = np.exp(x - x.max(axis=-1, keepdims=True))
            return x / x.sum(axis=-1, keepdims=True)
        if labels:
            return args.array(shape if name == "accuracy" else shape[-1:], label,
                              dtypes=[np.int64, np.uint64, np.int8, np.uint8], ints=(0, 5))
        return args.array(shape, label)

    inputs = [operand("a")] + ([] if name == "entropy" else [operand("b")])
    p = None
    if name == "minkowski_distance":
        p = args.value([1, 2, 3, 1.5, math.inf, np.float32(2.5)], [0.5, -1, math.nan, "2", True,
                                                                   None], "p")
    extra = [p] if name == "minkowski_distance" else []
    if name == "confusion_matrix":
        extra = [args.value([None, 6, 13], [1, 0, -1, 2 ** 40, 1.5, True], "num_classes")]
    names = ["p", "q", "a", "b", "y_true", "y_pred", "num_classes"]
    result = call(names, getattr(metrics, name), *inputs, *extra)
    if args.sane:
        assert result is not REJECTED
    if refused(*inputs) and not (name in ("accuracy", "hamming_distance")):
        assert result is REJECTED
    if result is REJECTED:
        return
    if name == "confusion_matrix":
        y_true, y_pred = (np.asarray(v).astype(np.int64) for v in inputs)
        expected = np.zeros_like(result)
        np.add.at(expected, (y_true, y_pred), 1)
        assert_same(result, expected)
        return
    if not all(is_real_array(x) for x in inputs):
        return
    a, b = [np.asarray(x, np.float64) for x in inputs] + [None] * (2 - len(inputs))
    expected = reference_metric(name, a, b, p)
    got = np.asarray(result, np.float64)
    close = np.isclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True) | (got == expected)
    assert close.all(), (got, expected)


# ---- a crash would kill pytest: a short campaign in a child process ---------------------------

def test_fuzz_campaign_in_a_subprocess(tmp_path):
    """Every fuzz target above, a few examples each, in a child `python -X faulthandler`:
    a segfault or abort in compiled code is a negative return code and a stack dump."""
    env = dict(os.environ, CNET_FUZZ_EXAMPLES="8", PYTHONFAULTHANDLER="1")
    command = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-x",
               "-p", "no:cacheprovider", "-k", "not in_a_subprocess", __file__]
    proc = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=600)
    report = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode >= 0, f"the fuzz campaign crashed (signal {-proc.returncode}):\n{report}"
    assert proc.returncode == 0, report
