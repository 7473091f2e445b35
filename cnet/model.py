"""Sequential and the parameter arena.

All weights and biases of a model live in one contiguous 1-D array (`model.flat_data`),
their gradients in a second one of the same size (`model.flat_grad`). Each layer's
`weight` / `bias` is a Parameter whose `.data` and `.grad` are views into them, so an
optimizer step is one loop over two flat arrays and a checkpoint is one vector.
"""
import collections
import copy
import math
import os
import threading
import weakref

import numpy as np

from cnet._validation import as_generator, as_matrix, as_numeric_array, resolve_dtype
from cnet.layers import Dense, Dropout, Layer, ReLU

__all__ = ["Parameter", "Sequential"]


class IncompatibleKeys(collections.namedtuple("IncompatibleKeys",
                                              ["missing_keys", "unexpected_keys"])):
    """What load_state_dict returns, as torch's: the keys missing from the state dict and
    those it has that the model does not (both empty with strict=True)."""

    def __repr__(self):
        return ("<All keys matched successfully>" if not (self.missing_keys or
                                                          self.unexpected_keys)
                else super().__repr__())


class Parameter:
    """A named slice of a model's arena; `.data` and `.grad` are views shaped like the tensor.

    The optimizers and the step runner work on the arena, so assigning to `.data` or `.grad`
    copies the values into these views (the shape must match) rather than rebinding them,
    and `p.grad = None` (torch's set_to_none) zeroes the gradient: the next backward starts
    from zero, as torch's does."""

    __slots__ = ("name", "offset", "flat_data", "flat_grad", "_data", "_grad")

    def __init__(self, name, flat_data, flat_grad, offset, shape):
        size = math.prod(shape)
        self.name = name
        self.offset = offset
        self._data = flat_data[offset:offset + size].reshape(shape)
        self._grad = flat_grad[offset:offset + size].reshape(shape)
        self.flat_data = flat_data
        self.flat_grad = flat_grad

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, values):
        self._data[...] = self._values("data", values)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, values):
        if values is None:
            self._grad.fill(0)
        else:
            self._grad[...] = self._values("grad", values)

    def _values(self, attribute, values):
        values = as_numeric_array(f"{self.name}.{attribute}", values)
        if values.shape != self._data.shape:
            raise ValueError(f"{self.name}.{attribute}: expected an array of shape "
                             f"{self._data.shape} (the values are copied into the model's "
                             f"arena), got shape {values.shape}")
        return values

    @property
    def requires_grad(self):
        return True

    @requires_grad.setter
    def requires_grad(self, requires_grad):
        if not requires_grad:
            raise ValueError(f"{self.name}.requires_grad: cnet trains every parameter it is "
                             f"given; to freeze this one, put it in a parameter group with "
                             f"lr=0 (e.g. SGD([{{'params': frozen, 'lr': 0}}, "
                             f"{{'params': rest}}], lr=0.1)), which leaves it unchanged")

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def __reduce__(self):
        # copy.deepcopy and pickle build the Parameter again over the (copied) arena: copied
        # on their own, .data and .grad would no longer be views of what the optimizers and
        # the step runner update.
        return Parameter, (self.name, self.flat_data, self.flat_grad, self.offset, self.shape)


class _InUse:
    """A model's lock, held by the calls that read or write its whole state. The holding
    thread may nest calls (a callback that evaluates, or saves a checkpoint). Another
    thread's call waits while the holder's outermost call is a plain one, which runs no
    user code and so waits for nothing itself (`with model._calls.plain`: Trainer's evaluate
    and predict, state_dict, load_state_dict, cnet.save, copy.deepcopy), and is refused
    while it is a fit (`with model._calls.fitting`), whose callbacks may wait for anything,
    the waiting thread included (two threads whose callbacks each call the other's model
    would deadlock)."""

    MODEL_BUSY = ("model: another thread is training this model (e.g. through another "
                  "Trainer); use one Trainer per model from several threads, or give each "
                  "thread its own copy (copy.deepcopy) before it trains")

    def __init__(self, busy=MODEL_BUSY):
        self._busy = busy           # the RuntimeError's message while another thread fits
        self._reset()
        _ALL_IN_USE.add(self)
        self.plain, self.fitting = _Hold(self, fitting=False), _Hold(self, fitting=True)

    def _reset(self):
        self._lock = threading.RLock()
        self._depth = 0             # the holding thread's nested calls
        self._fitting = False       # whether its outermost call is a fit

    def _acquire(self, fitting):
        # _fitting is written only by the holder; a stale read costs a waiter one more
        # millisecond, or refuses a call that overlapped a fit's last moment.
        while not self._lock.acquire(blocking=False):
            if self._fitting:
                raise RuntimeError(self._busy)
            if self._lock.acquire(timeout=0.001):
                break
        if self._depth == 0:
            self._fitting = fitting
        self._depth += 1

    def _release(self):
        self._depth -= 1
        if self._depth == 0:
            self._fitting = False
        self._lock.release()


# A forked child has only the forking thread: a call another thread held at the fork never
# ends there, so its holds are dropped (the forking thread's own, e.g. a fork from a
# callback, stay: the child returns through them).
_ALL_IN_USE = weakref.WeakSet()


def _after_fork_in_child():
    for in_use in list(_ALL_IN_USE):
        if not in_use._lock._is_owned():
            in_use._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Hold:
    """`with` one kind of call on a model (_InUse.plain or _InUse.fitting)."""

    __slots__ = ("_in_use", "_fitting")

    def __init__(self, in_use, fitting):
        self._in_use, self._fitting = in_use, fitting

    def __enter__(self):
        self._in_use._acquire(self._fitting)

    def __exit__(self, *exc_info):
        self._in_use._release()


class Sequential:
    """A stack of layers applied in order, with one flat parameter arena.

    >>> model = Sequential(Dense(64, 32), ReLU(), Dense(32, 10), seed=0)
    """

    def __init__(self, *layers, dtype="float32", seed=None):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]: expected a cnet layer, got {type(layer).__name__}")
            if any(layer is other for other in layers[:i]):
                raise ValueError(f"layers[{i}]: the same layer object appears twice")
            # A layer's parameters are views of its model's arena: in a second model it would
            # follow that model's weights in one path and the first model's in another.
            if "_bound" in layer.__dict__:
                raise ValueError(f"layers[{i}]: this {type(layer).__name__} already belongs to "
                                 f"another Sequential; build a new layer (models cannot share "
                                 f"layers as PyTorch modules can)")
        if not layers:
            raise ValueError("layers: expected at least one layer")
        self.layers = list(layers)
        self.dtype = resolve_dtype("float32" if dtype is None else dtype)   # None: as torch
        self.training = True
        # The input width is fixed by the first layer that has one (Dense, BatchNorm1d).
        self.in_features = next((w for w in (getattr(l, "in_features", None) or
                                             getattr(l, "num_features", None) for l in layers)
                                 if w is not None), None)
        width = None
        for layer in layers:
            width = layer.output_width(width)
        self.out_features = width
        self._allocate(as_generator("seed", seed))
        for layer in layers:    # the names it holds views of this model's arenas under
            layer._bound = frozenset(layer.param_shapes()) | frozenset(layer.buffer_shapes())
        self._calls = _InUse()

    @classmethod
    def mlp(cls, widths, activation=ReLU, dropout=0.0, init="torch", dtype="float32",
            seed=None):
        """A multi-layer perceptron: Dense layers of the given widths (input first, output
        last), each hidden one followed by `activation()` (a layer class; None for none)
        and, when dropout > 0, Dropout(dropout).

        >>> model = Sequential.mlp((784, 128, 64, 10), seed=0)   # Dense-ReLU-Dense-ReLU-Dense
        """
        try:
            widths = list(widths)
        except TypeError:
            raise TypeError(f"widths: expected a sequence of layer widths, "
                            f"got {widths!r}") from None
        if len(widths) < 2:
            raise ValueError(f"widths: expected an input and an output width at least, "
                             f"got {widths}")
        if activation is not None and not (isinstance(activation, type)
                                           and issubclass(activation, Layer)):
            raise TypeError(f"activation: expected a cnet layer class (e.g. cnet.ReLU) or "
                            f"None, got {activation!r}")
        if dropout:
            Dropout(dropout)            # checks the probability before any layer is built
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(Dense(fan_in, fan_out, init=init))
            if i < len(widths) - 2:
                if activation is not None:
                    layers.append(activation())
                if dropout:
                    layers.append(Dropout(dropout))
        return cls(*layers, dtype=dtype, seed=seed)

    def _allocate(self, rng):
        """One flat array for the parameters, one for their gradients, one for buffers
        (running statistics), then each layer binds its views and initialises them."""
        param_shapes = self._shapes("param_shapes")
        total = sum(math.prod(shape) for _, shape in param_shapes)
        if total * self.dtype.itemsize >= 2**63:
            raise ValueError(f"layers: {total:,} parameters are more than an array can hold")
        self.flat_data = np.zeros(total, self.dtype)
        self.flat_grad = np.zeros(total, self.dtype)
        self._parameters, offset = {}, 0
        for name, shape in param_shapes:
            self._parameters[name] = Parameter(name, self.flat_data, self.flat_grad, offset, shape)
            offset += math.prod(shape)
        buffer_shapes = self._shapes("buffer_shapes")
        self.flat_buffers = np.zeros(sum(math.prod(s) for _, s in buffer_shapes), self.dtype)
        self._buffers = self._buffer_views(buffer_shapes)
        for i, layer in enumerate(self.layers):
            layer.bind(self._own(i, self._parameters), self._own(i, self._buffers), rng)

    def _buffer_views(self, shapes):
        """{name: view of flat_buffers} for [(name, shape)], laid out one after another."""
        views, offset = {}, 0
        for name, shape in shapes:
            size = math.prod(shape)
            views[name] = self.flat_buffers[offset:offset + size].reshape(shape)
            offset += size
        return views

    def _shapes(self, kind):
        return [(f"{i}.{name}", shape) for i, layer in enumerate(self.layers)
                for name, shape in getattr(layer, kind)().items()]

    def __copy__(self):
        """copy.copy: the same layers, arenas and lock (a second name for this model)."""
        same = object.__new__(type(self))
        same.__dict__.update(self.__dict__)
        return same

    def __deepcopy__(self, memo):
        """copy.deepcopy, under the model's lock as state_dict: refused during another
        thread's fit (the copy would mix the weights of different steps), waiting for its
        evaluate or predict. (pickle takes no lock.)"""
        with self._calls.plain:
            clone = object.__new__(type(self))
            memo[id(self)] = clone
            clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return clone

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_calls"]
        return state

    def __setstate__(self, state):
        """copy.deepcopy and pickle: the buffers (running statistics), in the model and in
        its layers, are made views of the copied flat_buffers again (the Parameters rebind
        themselves); as plain copies they would drift from what the step runner updates.
        The copy gets a lock of its own."""
        self.__dict__.update(state)
        self._calls = _InUse()
        self._buffers = self._buffer_views([(name, a.shape) for name, a in self._buffers.items()])
        for name, view in self._buffers.items():
            index, attribute = name.split(".", 1)
            object.__setattr__(self.layers[int(index)], attribute, view)   # rebind, not copy in

    def _check_layers(self):
        """That model.layers is still the stack this model's arena was laid out for, and the
        layers with their settings, as a value to compare (Trainer keys its step runners on
        it). The step runner finds each layer's parameters in the arena by position and its
        compiled code does no bounds checks, so a layer appended, inserted, removed, resized
        or replaced by one with parameters after construction must be refused before it runs
        (activations may be swapped, e.g. Sigmoid for Step)."""
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"model.layers[{i}]: expected a cnet layer, got "
                                f"{type(layer).__name__}")
        signature = tuple((layer, tuple(layer.config().items())) for layer in self.layers)
        if signature == self.__dict__.get("_checked_layers"):
            return signature        # the same layers and settings as at the last check

        def changed(i, why):
            return ValueError(f"model.layers[{i}]: {why}; model.layers was changed after the "
                              f"Sequential was built, which only works for swapping (not "
                              f"inserting) a layer without parameters, e.g. an activation: "
                              f"build a new Sequential with the layers you want")
        for registry, kind in ((self._parameters, "param_shapes"),
                               (self._buffers, "buffer_shapes")):
            shapes = self._shapes(kind)
            for name, shape in shapes:
                index, attribute = name.split(".", 1)
                layer, mine = self.layers[int(index)], registry.get(name)
                if (mine is None or getattr(layer, attribute, None) is not mine
                        or tuple(mine.shape) != tuple(shape)):
                    raise changed(index, f"{layer!r} does not hold this model's {attribute!r} "
                                         f"at position {index}")
            if len(shapes) != len(registry):
                raise changed(len(self.layers), "a layer with parameters or buffers is missing")
        width = None
        for i, layer in enumerate(self.layers):
            try:
                width = layer.output_width(width)
            except ValueError as exc:
                raise changed(i, str(exc)) from None
        if width != self.out_features:
            raise changed(len(self.layers) - 1, f"the model now ends with {width} outputs, "
                                                f"not {self.out_features}")
        self._checked_layers = signature
        return signature

    @staticmethod
    def _own(index, named):
        prefix = f"{index}."
        return {name[len(prefix):]: value for name, value in named.items()
                if name.startswith(prefix)}

    # --- parameters -------------------------------------------------------------------

    def parameters(self):
        """The parameters in arena order (an iterator, as in PyTorch)."""
        return iter(self._parameters.values())

    def named_parameters(self):
        return iter(self._parameters.items())

    def zero_grad(self, set_to_none=True):
        """Zero every gradient. set_to_none (torch's) zeroes too: the arena always holds
        the gradients, and a backward then starts from zero, as torch's does."""
        self.flat_grad.fill(0)

    def _state_arrays(self):
        """Every array of the state dict, by key, in PyTorch's order (views, not copies)."""
        arrays = {}
        for i, layer in enumerate(self.layers):
            prefix = f"{i}."
            arrays.update({k: p.data for k, p in self._parameters.items() if k.startswith(prefix)})
            arrays.update({k: b for k, b in self._buffers.items() if k.startswith(prefix)})
            if getattr(layer, "track_running_stats", False):
                arrays[prefix + "num_batches_tracked"] = layer.num_batches_tracked.reshape(())
        return arrays

    def state_dict(self):
        """{"<index>.weight": array, ...}: copies, with PyTorch's Sequential keys and layouts
        (BatchNorm1d adds running_mean, running_var and num_batches_tracked, as in PyTorch)."""
        with self._calls.plain:
            return {name: array.copy() for name, array in self._state_arrays().items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy weights in. Every key and shape is checked before anything is written.
        Returns (missing_keys, unexpected_keys), as torch. A BatchNorm1d's
        num_batches_tracked may be missing (torch's older state dicts have none): it is
        left as it is, as torch does."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        targets = self._state_arrays()
        missing = [k for k in targets
                   if k not in state_dict and not k.endswith(".num_batches_tracked")]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for name, target in targets.items():
            if name not in state_dict:
                continue
            try:
                value = np.asarray(state_dict[name])
            except (TypeError, ValueError) as exc:
                raise TypeError(f"state_dict[{name!r}]: expected an array of real numbers "
                                f"({exc})") from None
            if value.shape != target.shape:
                raise ValueError(f"state_dict[{name!r}]: expected shape {target.shape}, "
                                 f"got {value.shape}")
            if value.dtype.kind not in "fiu" or value.dtype.itemsize > 8:
                raise TypeError(f"state_dict[{name!r}]: expected real numbers, "
                                f"got dtype {value.dtype}")
            value = value.astype(target.dtype)
            if not np.isfinite(value).all():
                raise ValueError(f"state_dict[{name!r}]: expected finite values")
            staged[name] = value
        with self._calls.plain:
            for name, value in staged.items():
                targets[name][...] = value
        return IncompatibleKeys(missing, unexpected)

    # --- modes ---------------------------------------------------------------------------

    def train(self, mode=True):
        """Training mode (Dropout drops, BatchNorm1d uses and updates batch statistics) or,
        with mode=False, evaluation mode; returns the model."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode: expected True or False, got {mode!r}")
        self.training = bool(mode)
        for layer in self.layers:
            layer.training = self.training
        return self

    def eval(self):
        return self.train(False)

    # --- the manual path: one layer at a time, same kernels as the step runner ------------

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """Output of the model for x of shape (batch, in_features)."""
        x = as_matrix("x", x, self.dtype, self.in_features)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output):
        """Backpropagate `grad_output` (d loss / d output): accumulates into every parameter's
        .grad and returns d loss / d input."""
        grad = grad_output
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    # --- containers ----------------------------------------------------------------------

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        """model[i] is a layer; model[i:j] a list of layers, not a Sequential as in PyTorch,
        since their parameters stay views of this model's arena."""
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + f"\n)  # dtype={self.dtype.name}"
