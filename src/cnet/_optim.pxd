# Optimizer update loops over the flat parameter arena (PyTorch's update rules).
from cython cimport floating

cpdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_ADAGRAD = 2
    OPT_RMSPROP = 3

# One parameter group's hyper-parameters, read from the Python optimizer once per call
# into the step runner (so schedulers and users can change them between calls).
ctypedef struct OptimConfig:
    int kind
    double lr
    double weight_decay
    double momentum
    double dampening
    double beta1
    double beta2
    double eps
    bint nesterov
    bint amsgrad
    bint decoupled_weight_decay
    double lr_decay        # Adagrad
    double alpha           # RMSprop
    bint centered          # RMSprop

cdef void sgd_step_ptr(floating* param, floating* momentum_buffer, const floating* grad,
                       Py_ssize_t n, long step, double lr, double momentum, double dampening,
                       double weight_decay, bint nesterov) noexcept nogil

cdef void adam_step_ptr(floating* param, floating* exp_avg, floating* exp_avg_sq,
                        floating* max_exp_avg_sq, const floating* grad, Py_ssize_t n,
                        long step, double lr, double beta1, double beta2, double eps,
                        double weight_decay, bint amsgrad, bint decoupled) noexcept nogil

cdef void adagrad_step_ptr(floating* param, floating* state_sum, const floating* grad,
                           Py_ssize_t n, long step, double lr, double lr_decay,
                           double weight_decay, double eps) noexcept nogil

cdef void rmsprop_step_ptr(floating* param, floating* square_avg, floating* momentum_buffer,
                           floating* grad_avg, const floating* grad, Py_ssize_t n, double lr,
                           double alpha, double eps, double weight_decay, double momentum,
                           bint centered) noexcept nogil

cdef double clip_grad_norm_ptr(floating* grad, Py_ssize_t n, double max_norm) noexcept nogil

cdef void fill_optim_config(OptimConfig* config, dict group_config)

cdef void optimizer_step_ptr(const OptimConfig* config, floating* param, floating* state0,
                             floating* state1, floating* state2, const floating* grad,
                             Py_ssize_t n, long step) noexcept nogil
