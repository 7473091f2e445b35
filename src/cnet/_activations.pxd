# Activation functions, forward and backward, over contiguous row-major (rows, cols) arrays.
from cython cimport floating

cpdef enum:    # cpdef: the values are also module attributes for the Python layer
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_SIGMOID = 3
    ACT_TANH = 4
    ACT_STEP = 5
    ACT_SOFTMAX = 6

cdef void activation_forward(int kind, floating* y, const floating* x,
                             Py_ssize_t rows, Py_ssize_t cols, double slope) noexcept nogil

cdef void activation_backward(int kind, floating* dx, const floating* dy, const floating* x,
                              const floating* y, Py_ssize_t rows, Py_ssize_t cols,
                              double slope) noexcept nogil
