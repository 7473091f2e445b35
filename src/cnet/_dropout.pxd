from cython cimport floating
from libc.stdint cimport uint64_t

cdef void dropout_forward_ptr(floating* y, floating* mask, const floating* x, Py_ssize_t n,
                              double p, uint64_t* rng) noexcept nogil

cdef void dropout_backward_ptr(floating* dx, const floating* dy, const floating* mask,
                               Py_ssize_t n) noexcept nogil
