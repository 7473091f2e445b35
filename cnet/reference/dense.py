import numpy as np


def dense_forward(y, x, weight, bias=None):
    """y = x @ weight.T + bias, written into y (B, OUT)."""
    np.matmul(x, weight.T, out=y)
    if bias is not None:
        y += bias


def dense_backward(dweight, dbias, dx, dy, x, weight, beta=0.0):
    """dweight (+)= dyᵀ x, dbias (+)= Σ_rows dy, dx = dy @ weight (each skipped when None)."""
    if beta == 0:
        np.matmul(dy.T, x, out=dweight)
    else:
        dweight += dy.T @ x
    if dbias is not None:
        if beta == 0:
            np.sum(dy, axis=0, out=dbias)
        else:
            dbias += dy.sum(axis=0)
    if dx is not None:
        np.matmul(dy, weight, out=dx)
