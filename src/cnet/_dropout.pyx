"""Inverted dropout: in training each element is kept with probability 1 - p and scaled by
1 / (1 - p), so the expected output equals the input and evaluation needs no rescaling.

The random state is two uint64 words owned by the Dropout layer, (key, counter): the
manual path and the step runner draw from the same stream, so a seeded model gives the
same masks either way.
"""
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t

from cnet._memview cimport cptr1, ptr1


cdef extern from "kernels.h" nogil:
    void cnet_dropout_f32(float* y, float* mask, const float* x, Py_ssize_t n, uint64_t key,
                          uint64_t counter, uint32_t threshold, float scale)
    void cnet_dropout_f64(double* y, double* mask, const double* x, Py_ssize_t n,
                          uint64_t key, uint64_t counter, uint32_t threshold, double scale)


cdef void dropout_forward_ptr(floating* y,              # (n,) out
                              floating* mask,           # (n,) out: 0 or 1/(1-p), for backward
                              const floating* x,        # (n,)
                              Py_ssize_t n, double p,
                              uint64_t* rng) noexcept nogil:   # (2,) in/out: key, counter
    # p == 1 drops everything (PyTorch gives zeros); the threshold saturates at 2^32 - 1.
    cdef floating scale = 0 if p >= 1 else <floating>(1 / (1 - p))
    cdef uint32_t threshold = 0xFFFFFFFF if p >= 1 else <uint32_t>(p * 4294967296.0)
    if floating is float:
        cnet_dropout_f32(y, mask, x, n, rng[0], rng[1], threshold, scale)
    else:
        cnet_dropout_f64(y, mask, x, n, rng[0], rng[1], threshold, scale)
    rng[1] += <uint64_t>n


cdef void dropout_backward_ptr(floating* dx,            # (n,) out
                               const floating* dy,      # (n,)
                               const floating* mask,    # (n,) from forward
                               Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dy[i] * mask[i]


def dropout_forward(floating[::1] y, floating[::1] mask, const floating[::1] x, double p,
                    uint64_t[::1] rng):
    """y = x * mask with a fresh mask (flattened arrays); advances rng's counter."""
    with nogil:
        dropout_forward_ptr(ptr1(y), ptr1(mask), cptr1(x), x.shape[0], p, &rng[0])


def dropout_backward(floating[::1] dx, const floating[::1] dy, const floating[::1] mask):
    """dx = dy * mask (flattened arrays)."""
    with nogil:
        dropout_backward_ptr(ptr1(dx), cptr1(dy), cptr1(mask), dy.shape[0])
