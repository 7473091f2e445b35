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

# What the step runner needs to run a loss by itself: which kernel, and its options.
cpdef enum:
    LOSS_CROSS_ENTROPY = 0
    LOSS_MSE = 1

ctypedef struct LossConfig:
    int kind
    int reduction
    bint class_targets        # targets are int64 class indices (else floats shaped like the output)
    int64_t ignore_index
    double label_smoothing
    void* weight              # (C,) class weights in the element type, or NULL

cdef object fill_loss_config(LossConfig* config, object loss, object dtype)

cdef double loss_ptr(const LossConfig* config, floating* grad, const floating* output,
                     const void* target, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
