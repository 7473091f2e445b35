import numpy as np


def matmul(out, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out."""
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if beta == 0:
        np.multiply(product, alpha, out=out)
    else:
        out *= beta
        out += alpha * product
