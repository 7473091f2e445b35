"""ReferenceMLP: a Sequential of Dense and activation layers trained by ordinary NumPy code.

It is the baseline the benchmarks measure cnet's Trainer against, and the oracle that shows
both do the same computation: built from a cnet Sequential, it copies that model's flat
parameter arena (the same layout, so the same PyTorch-style initial weights) and trains it
with the cnet.reference kernels, written the way a NumPy programmer would: rows gathered
with fancy indexing (`X[idx]`), a new array per layer output and gradient, one Adam update
over the flat arena per step. Mini-batches follow Trainer.fit's rule: one
`np.random.default_rng(seed).permutation(n)` per epoch, batches of consecutive rows of it,
the last one possibly shorter.

    ref = ReferenceMLP(model, lr=1e-3)
    ref.fit_epoch(X, y, batch_size=64, seed=0)
    labels = ref.predict(X_test)
"""
import numpy as np

from cnet.reference.activations import (
    identity_backward, identity_forward, leaky_relu_backward, leaky_relu_forward,
    relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward,
    softmax_forward, tanh_backward, tanh_forward)
from cnet.reference.dense import dense_backward, dense_forward
from cnet.reference.losses import softmax_cross_entropy
from cnet.reference.optim import adam_step

__all__ = ["ReferenceMLP"]

# Activation layers by class name: (forward, backward, names of extra arguments).
_ACTIVATIONS = {
    "Identity": (identity_forward, identity_backward, ()),
    "ReLU": (relu_forward, relu_backward, ()),
    "LeakyReLU": (leaky_relu_forward, leaky_relu_backward, ("negative_slope",)),
    "Sigmoid": (sigmoid_forward, sigmoid_backward, ()),
    "Tanh": (tanh_forward, tanh_backward, ()),
    "Softmax": (softmax_forward, softmax_backward, ()),
}


class _Dense:
    def __init__(self, weight, bias, dweight, dbias):
        self.weight, self.bias, self.dweight, self.dbias = weight, bias, dweight, dbias

    def forward(self, x):
        y = np.empty((x.shape[0], self.weight.shape[0]), x.dtype)
        dense_forward(y, x, self.weight, self.bias)
        return y

    def backward(self, dy, x, y, need_dx):
        dx = np.empty_like(x) if need_dx else None
        dense_backward(self.dweight, self.dbias, dx, dy, x, self.weight)   # beta=0: overwrite
        return dx


class _Activation:
    def __init__(self, forward, backward, args):
        self._forward, self._backward, self.args = forward, backward, args

    def forward(self, x):
        y = np.empty_like(x)
        self._forward(y, x, *self.args)
        return y

    def backward(self, dy, x, y, need_dx):
        dx = np.empty_like(dy)
        self._backward(dx, dy, x, y, *self.args)
        return dx


class ReferenceMLP:
    """The MLP of a cnet Sequential (Dense and activation layers), trained with softmax
    cross-entropy (mean over the batch) and Adam (torch.optim.Adam's rule) in plain NumPy.

    model: the cnet Sequential to copy; its architecture, dtype and current weights are taken,
    the model itself is not modified. lr, betas, eps, weight_decay: Adam's hyper-parameters.
    """

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.dtype = np.dtype(model.dtype)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.flat_data = np.array(model.flat_data, dtype=self.dtype, copy=True)
        self.flat_grad = np.zeros_like(self.flat_data)
        self.exp_avg = np.zeros_like(self.flat_data)
        self.exp_avg_sq = np.zeros_like(self.flat_data)
        self.step_count = 0
        params = dict(model.named_parameters())
        self.layers = []
        for i, layer in enumerate(model.layers):
            weight, bias = params.get(f"{i}.weight"), params.get(f"{i}.bias")
            name = type(layer).__name__
            if weight is not None:
                self.layers.append(_Dense(self._view(self.flat_data, weight),
                                          self._view(self.flat_data, bias),
                                          self._view(self.flat_grad, weight),
                                          self._view(self.flat_grad, bias)))
            elif name in _ACTIVATIONS:
                forward, backward, arg_names = _ACTIVATIONS[name]
                args = tuple(getattr(layer, a) for a in arg_names)
                self.layers.append(_Activation(forward, backward, args))
            else:
                raise TypeError(f"model[{i}]: ReferenceMLP supports Dense and the activations "
                                f"{sorted(_ACTIVATIONS)}, got {name}")

    @staticmethod
    def _view(flat, param):
        if param is None:
            return None
        return flat[param.offset:param.offset + param.size].reshape(param.shape)

    def state_dict(self):
        """Copies of the weights, keyed like the Sequential's state dict."""
        out = {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, _Dense):
                out[f"{i}.weight"] = layer.weight.copy()
                if layer.bias is not None:
                    out[f"{i}.bias"] = layer.bias.copy()
        return out

    # --- inference -------------------------------------------------------------------------

    def forward(self, X):
        """The logits for every row of X, in one pass."""
        x = np.asarray(X, dtype=self.dtype)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def predict(self, X):
        """Class labels (int64) for every row of X."""
        return np.argmax(self.forward(X), axis=1)

    # --- training --------------------------------------------------------------------------

    def train_step(self, xb, yb):
        """Forward, loss, backward and one Adam update on the batch (xb, yb); returns the loss."""
        inputs, x = [], xb
        for layer in self.layers:
            inputs.append(x)
            x = layer.forward(x)
        outputs = inputs[1:] + [x]
        dy = np.empty_like(x)
        loss = softmax_cross_entropy(dy, None, x, yb)
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, inputs[i], outputs[i], need_dx=i > 0)
        self.step_count += 1
        beta1, beta2 = self.betas
        adam_step(self.flat_data, self.exp_avg, self.exp_avg_sq, None, self.flat_grad,
                  self.step_count, self.lr, beta1, beta2, self.eps, self.weight_decay)
        return loss

    def fit_epoch(self, X, y, batch_size, seed=None, shuffle=True):
        """One pass over (X, y) in mini-batches of batch_size rows, in the order
        np.random.default_rng(seed).permutation(len(X)) (seed: an int, a Generator, which
        then advances as over Trainer.fit's epochs, or None). Returns the mean loss."""
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y, dtype=np.int64)
        n = len(X)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            total += self.train_step(X[idx], y[idx]) * len(idx)
        return total / n
