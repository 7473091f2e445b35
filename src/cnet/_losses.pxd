from cython cimport floating
from libc.stdint cimport int64_t

cdef enum:
    REDUCTION_NONE = 0
    REDUCTION_MEAN = 1
    REDUCTION_SUM = 2
    REDUCTION_BATCHMEAN = 3   # KLDivLoss: the sum divided by the number of rows

# What the step runner needs to run a loss by itself: which kernel, and its options.
cpdef enum:
    LOSS_CROSS_ENTROPY = 0        # logits and class indices
    LOSS_MSE = 1                  # the rest up to LOSS_KL_DIV are element by element
    LOSS_L1 = 2
    LOSS_HUBER = 3
    LOSS_BCE = 4                  # probabilities
    LOSS_BCE_WITH_LOGITS = 5
    LOSS_KL_DIV = 6               # log-probabilities against (log-)probabilities
    LOSS_SOFT_CROSS_ENTROPY = 7   # logits and class probabilities (soft labels)

ctypedef struct LossConfig:
    int kind
    int reduction
    bint class_targets        # targets are int64 class indices (else floats shaped like the output)
    int64_t ignore_index
    double label_smoothing
    void* weight              # cross-entropy: (C,) class weights; BCE: rescaling weights read
                              # at weight[r * weight_row_stride + c * weight_col_stride]; or NULL
    Py_ssize_t weight_row_stride
    Py_ssize_t weight_col_stride
    void* pos_weight          # BCEWithLogits: pos_weight[c * pos_weight_stride], or NULL
    Py_ssize_t pos_weight_stride
    double delta              # HuberLoss
    bint log_target           # KLDivLoss

cdef double softmax_cross_entropy_ptr(floating* dlogits, floating* losses,
                                      const floating* logits, const int64_t* target,
                                      const floating* weight,
                                      Py_ssize_t batch, Py_ssize_t classes, int64_t ignore_index,
                                      double label_smoothing, int reduction) noexcept nogil

cdef double soft_cross_entropy_ptr(floating* dlogits, floating* losses,
                                   const floating* logits, const floating* target,
                                   const floating* weight, Py_ssize_t batch, Py_ssize_t classes,
                                   double label_smoothing, int reduction) noexcept nogil

cdef double pointwise_loss_ptr(const LossConfig* config, floating* dinput, floating* losses,
                               const floating* input, const floating* target,
                               Py_ssize_t rows, Py_ssize_t cols) noexcept nogil

cdef double triplet_margin_ptr(floating* danchor, floating* dpositive, floating* dnegative,
                               floating* losses, const floating* anchor,
                               const floating* positive, const floating* negative,
                               Py_ssize_t batch, Py_ssize_t dim, double margin, double p,
                               double eps, bint swap, int reduction) noexcept nogil

cdef object fill_loss_config(LossConfig* config, object loss, object dtype)

cdef double loss_ptr(const LossConfig* config, floating* grad, const floating* output,
                     const void* target, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
