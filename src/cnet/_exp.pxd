# The exponential's loops (kernels.h), typed over float and double: they vectorise where
# libm's exp and tanh do not. Each works in place (y may be x).
from cython cimport floating

cdef extern from "kernels.h" nogil:
    void cnet_exp_shifted_f32(float* y, const float* x, Py_ssize_t n, float shift)
    void cnet_exp_shifted_f64(double* y, const double* x, Py_ssize_t n, double shift)
    void cnet_sigmoid_f32(float* y, const float* x, Py_ssize_t n)
    void cnet_sigmoid_f64(double* y, const double* x, Py_ssize_t n)
    void cnet_tanh_f32(float* y, const float* x, Py_ssize_t n)
    void cnet_tanh_f64(double* y, const double* x, Py_ssize_t n)


cdef inline void exp_shifted(floating* y, const floating* x, Py_ssize_t n,
                             floating shift) noexcept nogil:
    """y = e^(x - shift) for shift >= max(x) (within about 1 ulp)."""
    if floating is float:
        cnet_exp_shifted_f32(y, x, n, shift)
    else:
        cnet_exp_shifted_f64(y, x, n, shift)


cdef inline void sigmoid(floating* y, const floating* x, Py_ssize_t n) noexcept nogil:
    """y = 1 / (1 + e^-x), in a form that never overflows."""
    if floating is float:
        cnet_sigmoid_f32(y, x, n)
    else:
        cnet_sigmoid_f64(y, x, n)


cdef inline void tanh(floating* y, const floating* x, Py_ssize_t n) noexcept nogil:
    """y = tanh(x), within 2 ulp (float32: for every input)."""
    if floating is float:
        cnet_tanh_f32(y, x, n)
    else:
        cnet_tanh_f64(y, x, n)
