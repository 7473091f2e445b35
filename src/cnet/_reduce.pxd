# Sums, dot products and maxima of a row (kernels.h: independent partial results, so they
# vectorise where a plain loop is one chain of dependent additions). Sums run in double.
from cython cimport floating

cdef extern from "kernels.h" nogil:
    enum: CNET_LANES
    double cnet_lanes_total(const double* acc)
    void cnet_sum_lanes_f32(double* acc, const float* x, Py_ssize_t n)
    void cnet_sum_lanes_f64(double* acc, const double* x, Py_ssize_t n)
    double cnet_sum_f32(const float* x, Py_ssize_t n)
    double cnet_sum_f64(const double* x, Py_ssize_t n)
    double cnet_dot_f32(const float* x, const float* y, Py_ssize_t n)
    double cnet_dot_f64(const double* x, const double* y, Py_ssize_t n)
    float cnet_max_f32(const float* x, Py_ssize_t n)
    double cnet_max_f64(const double* x, Py_ssize_t n)


cdef inline double row_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return cnet_sum_f32(x, n)
    else:
        return cnet_sum_f64(x, n)


cdef inline void row_sum_lanes(double* acc, const floating* x, Py_ssize_t n) noexcept nogil:
    """Add x into the partial sums acc[CNET_LANES]: a row summed a block at a time, each
    block but the last a multiple of CNET_LANES long, then cnet_lanes_total(acc), gives
    row_sum's result to the last bit."""
    if floating is float:
        cnet_sum_lanes_f32(acc, x, n)
    else:
        cnet_sum_lanes_f64(acc, x, n)


cdef inline double row_dot(const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return cnet_dot_f32(x, y, n)
    else:
        return cnet_dot_f64(x, y, n)


cdef inline floating row_max(const floating* x, Py_ssize_t n) noexcept nogil:
    """The largest of x[0..n), n >= 1; NaN only when x[0] is NaN."""
    if floating is float:
        return cnet_max_f32(x, n)
    else:
        return cnet_max_f64(x, n)
