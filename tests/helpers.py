"""Shared test helpers: hypothesis strategies, tolerances, finite differences."""
import numpy as np
from hypothesis import strategies as st

DTYPES = [np.float32, np.float64]

# Sizes include 1, primes and non-multiples of 8, where vector loops have tails.
dims = st.integers(min_value=1, max_value=37)
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def tol(dtype):
    """Tolerance for comparing a kernel with its NumPy twin in this dtype."""
    if dtype == np.float32:
        return {"rtol": 2e-4, "atol": 2e-5}
    return {"rtol": 1e-10, "atol": 1e-12}


def random_array(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def numerical_gradient(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at x (float64, perturbed in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def train_manually(model, optimizer, loss_fn, X, y, batch_size, epochs, seed=None,
                   shuffle=False, max_grad_norm=None):
    """The PyTorch-style loop Trainer.fit must reproduce: the same batches (one
    default_rng(seed).permutation per epoch when shuffling), zero_grad, forward, loss,
    backward, optional global-norm clipping, step."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
        for start in range(0, len(X), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(X[rows]), y[rows])
            model.backward(loss_fn.backward())
            if max_grad_norm is not None:
                norm = np.linalg.norm(model.flat_grad)
                model.flat_grad *= min(1.0, max_grad_norm / (norm + 1e-6))
            optimizer.step()


def check_model_gradients(model, objective, x, rtol=1e-5, atol=1e-8):
    """Backpropagated gradients of every parameter and of the input x against central
    finite differences of objective() (which runs the forward pass and the loss)."""
    from numpy.testing import assert_allclose
    objective()
    model.zero_grad()
    grad_x = model.backward(objective.loss_fn.backward())
    for name, p in model.named_parameters():
        assert_allclose(p.grad, numerical_gradient(objective, p.data), rtol=rtol, atol=atol,
                        err_msg=name)
    assert_allclose(grad_x, numerical_gradient(objective, x), rtol=rtol, atol=atol)


def closure_for(model, optimizer, X, Y, loss_fn):
    """The closure LBFGS.step takes: zero the gradients, forward, loss, backward."""
    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(X), Y)
        model.backward(loss_fn.backward())
        return loss
    return closure
