from cython cimport floating
from libc.stdint cimport int64_t

cdef enum:
    REDUCTION_NONE = 0
    REDUCTION_MEAN = 1
    REDUCTION_SUM = 2

cdef double softmax_cross_entropy_ptr(floating* dlogits, floating* losses,
                                      const floating* logits, const int64_t* target,
                                      const floating* weight,
                                      Py_ssize_t batch, Py_ssize_t classes, int64_t ignore_index,
                                      double label_smoothing, int reduction) noexcept nogil

cdef double mse_loss_ptr(floating* dinput, floating* losses, const floating* input,
                         const floating* target, Py_ssize_t n, int reduction) noexcept nogil
