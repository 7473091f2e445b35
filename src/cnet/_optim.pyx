"""Optimizer updates: one loop over a flat span of parameters, gradients and state.

The rules and the order of floating-point operations follow PyTorch's single-tensor
implementations (torch/optim/sgd.py, adam.py, adagrad.py, rmsprop.py), so trajectories agree to round-off.
`step` counts from 1 (the first update is step 1), as PyTorch's state["step"] does.
"""
from cython cimport floating
from libc.math cimport pow, sqrt

from scipy.linalg.cython_blas cimport ddot, dscal, sdot, sscal

from cnet._memview cimport ptr1, cptr1


cdef extern from "kernels.h" nogil:
    void cnet_sgd_f32(float* param, float* momentum_buffer, const float* grad, Py_ssize_t n,
                      float lr, float momentum, float keep, float weight_decay,
                      int first_step, int nesterov)
    void cnet_sgd_f64(double* param, double* momentum_buffer, const double* grad, Py_ssize_t n,
                      double lr, double momentum, double keep, double weight_decay,
                      int first_step, int nesterov)
    void cnet_adam_f32(float* param, float* exp_avg, float* exp_avg_sq, float* max_exp_avg_sq,
                       const float* grad, Py_ssize_t n, float step_size, float inv_bc2_sqrt,
                       float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                       float weight_decay, float lr_wd, int amsgrad, int decoupled)
    void cnet_adam_f64(double* param, double* exp_avg, double* exp_avg_sq,
                       double* max_exp_avg_sq, const double* grad, Py_ssize_t n,
                       double step_size, double inv_bc2_sqrt, double one_minus_beta1, double beta2,
                       double one_minus_beta2, double eps, double weight_decay, double lr_wd,
                       int amsgrad, int decoupled)
    void cnet_adagrad_f32(float* param, float* state_sum, const float* grad, Py_ssize_t n,
                          float clr, float weight_decay, float eps)
    void cnet_adagrad_f64(double* param, double* state_sum, const double* grad, Py_ssize_t n,
                          double clr, double weight_decay, double eps)
    void cnet_rmsprop_f32(float* param, float* square_avg, float* momentum_buffer,
                          float* grad_avg, const float* grad, Py_ssize_t n, float lr,
                          float alpha, float one_minus_alpha, float lerp_coeff, int lerp_small,
                          float eps, float weight_decay, float momentum, int use_momentum,
                          int centered)
    void cnet_rmsprop_f64(double* param, double* square_avg, double* momentum_buffer,
                          double* grad_avg, const double* grad, Py_ssize_t n, double lr,
                          double alpha, double one_minus_alpha, double lerp_coeff,
                          int lerp_small, double eps, double weight_decay, double momentum,
                          int use_momentum, int centered)


cdef void sgd_step_ptr(floating* param,              # (n,) in/out
                       floating* momentum_buffer,    # (n,) in/out, or NULL when momentum == 0
                       const floating* grad,         # (n,)
                       Py_ssize_t n, long step, double lr, double momentum, double dampening,
                       double weight_decay, bint nesterov) noexcept nogil:
    # The loop is in kernels.h, where it vectorises with runtime CPU dispatch.
    if floating is float:
        cnet_sgd_f32(param, momentum_buffer, grad, n, lr, momentum, 1 - dampening,
                     weight_decay, step == 1, nesterov)
    else:
        cnet_sgd_f64(param, momentum_buffer, grad, n, lr, momentum, 1 - dampening,
                     weight_decay, step == 1, nesterov)


cdef void adam_step_ptr(floating* param,             # (n,) in/out
                        floating* exp_avg,           # (n,) in/out: first moment
                        floating* exp_avg_sq,        # (n,) in/out: second moment
                        floating* max_exp_avg_sq,    # (n,) in/out, or NULL unless amsgrad
                        const floating* grad,        # (n,)
                        Py_ssize_t n, long step, double lr, double beta1, double beta2,
                        double eps, double weight_decay, bint amsgrad,
                        bint decoupled) noexcept nogil:
    """Adam, or AdamW when `decoupled` (weight decay applied to the parameter, not the gradient)."""
    # Scalars in double, as PyTorch computes them; the loop runs in the element type.
    cdef double step_size = lr / (1 - pow(beta1, <double>step))
    cdef double inv_bc2_sqrt = 1 / sqrt(1 - pow(beta2, <double>step))
    if floating is float:
        cnet_adam_f32(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n, step_size, inv_bc2_sqrt,
                      1 - beta1, beta2, 1 - beta2, eps, weight_decay, lr * weight_decay, amsgrad,
                      decoupled)
    else:
        cnet_adam_f64(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n, step_size, inv_bc2_sqrt,
                      1 - beta1, beta2, 1 - beta2, eps, weight_decay, lr * weight_decay, amsgrad,
                      decoupled)


cdef void adagrad_step_ptr(floating* param,           # (n,) in/out
                           floating* state_sum,       # (n,) in/out: sum of squared gradients
                           const floating* grad,      # (n,)
                           Py_ssize_t n, long step, double lr, double lr_decay,
                           double weight_decay, double eps) noexcept nogil:
    """Adagrad: the step size lr / (1 + (step - 1) * lr_decay) over the root of the running
    sum of squared gradients."""
    cdef double clr = lr / (1 + (step - 1) * lr_decay)
    if floating is float:
        cnet_adagrad_f32(param, state_sum, grad, n, clr, weight_decay, eps)
    else:
        cnet_adagrad_f64(param, state_sum, grad, n, clr, weight_decay, eps)


cdef void rmsprop_step_ptr(floating* param,            # (n,) in/out
                           floating* square_avg,       # (n,) in/out
                           floating* momentum_buffer,  # (n,) in/out, or NULL when momentum == 0
                           floating* grad_avg,         # (n,) in/out, or NULL unless centered
                           const floating* grad,       # (n,)
                           Py_ssize_t n, double lr, double alpha, double eps,
                           double weight_decay, double momentum, bint centered) noexcept nogil:
    """RMSprop (Hinton), optionally centered (Graves) and with momentum."""
    # grad_avg.lerp_(grad, 1 - alpha) as torch computes it: two forms, chosen by the weight.
    cdef floating weight = <floating>(1 - alpha)
    cdef bint small = (weight if weight >= 0 else -weight) < 0.5
    cdef floating coeff = weight if small else weight - 1
    if floating is float:
        cnet_rmsprop_f32(param, square_avg, momentum_buffer, grad_avg, grad, n, lr, alpha,
                         1 - alpha, coeff, small, eps, weight_decay, momentum, momentum > 0,
                         centered)
    else:
        cnet_rmsprop_f64(param, square_avg, momentum_buffer, grad_avg, grad, n, lr, alpha,
                         1 - alpha, coeff, small, eps, weight_decay, momentum, momentum > 0,
                         centered)


cdef void fill_optim_config(OptimConfig* c, dict config):
    """Fill c from one entry of an optimizer's kernel_groups() (absent names are unused)."""
    c.kind = config["kind"]
    c.lr = config["lr"]
    c.weight_decay = config.get("weight_decay", 0.0)
    c.momentum = config.get("momentum", 0.0)
    c.dampening = config.get("dampening", 0.0)
    c.beta1 = config.get("beta1", 0.0)
    c.beta2 = config.get("beta2", 0.0)
    c.eps = config.get("eps", 0.0)
    c.nesterov = config.get("nesterov", False)
    c.amsgrad = config.get("amsgrad", False)
    c.decoupled_weight_decay = config.get("decoupled_weight_decay", False)
    c.lr_decay = config.get("lr_decay", 0.0)
    c.alpha = config.get("alpha", 0.0)
    c.centered = config.get("centered", False)


cdef void optimizer_step_ptr(const OptimConfig* c, floating* param, floating* state0,
                             floating* state1, floating* state2, const floating* grad,
                             Py_ssize_t n, long step) noexcept nogil:
    """Dispatch one group's update; the state slots are each optimizer's arrays in order."""
    if c.kind == OPT_SGD:
        sgd_step_ptr(param, state0, grad, n, step, c.lr, c.momentum, c.dampening,
                     c.weight_decay, c.nesterov)
    elif c.kind == OPT_ADAM:
        adam_step_ptr(param, state0, state1, state2, grad, n, step, c.lr, c.beta1, c.beta2,
                      c.eps, c.weight_decay, c.amsgrad, c.decoupled_weight_decay)
    elif c.kind == OPT_ADAGRAD:
        adagrad_step_ptr(param, state0, grad, n, step, c.lr, c.lr_decay, c.weight_decay, c.eps)
    elif c.kind == OPT_RMSPROP:
        rmsprop_step_ptr(param, state0, state1, state2, grad, n, c.lr, c.alpha, c.eps,
                         c.weight_decay, c.momentum, c.centered)


cdef double clip_grad_norm_ptr(floating* grad, Py_ssize_t n, double max_norm) noexcept nogil:
    """Scale grad so that its L2 norm is at most max_norm, as torch.nn.utils.clip_grad_norm_
    (coefficient max_norm / (norm + 1e-6), capped at 1). Returns the norm before clipping."""
    cdef int n_ = <int>n, one = 1
    cdef double norm
    cdef floating coef
    if floating is float:
        norm = sqrt(sdot(&n_, grad, &one, grad, &one))
    else:
        norm = sqrt(ddot(&n_, grad, &one, grad, &one))
    coef = <floating>(max_norm / (norm + 1e-6))
    if coef < 1:
        if floating is float:
            sscal(&n_, &coef, grad, &one)
        else:
            dscal(&n_, &coef, grad, &one)
    return norm


def clip_grad_norm(floating[::1] grad, double max_norm):
    """Clip grad in place to L2 norm max_norm; returns the norm before clipping."""
    cdef double norm
    with nogil:
        norm = clip_grad_norm_ptr(ptr1(grad), grad.shape[0], max_norm)
    return norm


def sgd_step(floating[::1] param, floating[::1] momentum_buffer, const floating[::1] grad,
             long step, double lr, double momentum=0.0, double dampening=0.0,
             double weight_decay=0.0, bint nesterov=False):
    """One SGD update of `param` in place (momentum_buffer may be None when momentum == 0)."""
    with nogil:
        sgd_step_ptr(ptr1(param), ptr1(momentum_buffer), cptr1(grad), param.shape[0], step,
                     lr, momentum, dampening, weight_decay, nesterov)


def adam_step(floating[::1] param, floating[::1] exp_avg, floating[::1] exp_avg_sq,
              floating[::1] max_exp_avg_sq, const floating[::1] grad, long step,
              double lr=1e-3, double beta1=0.9, double beta2=0.999, double eps=1e-8,
              double weight_decay=0.0, bint amsgrad=False, bint decoupled=False):
    """One Adam (decoupled=False) or AdamW (decoupled=True) update of `param` in place."""
    with nogil:
        adam_step_ptr(ptr1(param), ptr1(exp_avg), ptr1(exp_avg_sq), ptr1(max_exp_avg_sq),
                      cptr1(grad), param.shape[0], step, lr, beta1, beta2, eps, weight_decay,
                      amsgrad, decoupled)



def adagrad_step(floating[::1] param, floating[::1] state_sum, const floating[::1] grad,
                 long step, double lr=1e-2, double lr_decay=0.0, double weight_decay=0.0,
                 double eps=1e-10):
    """One Adagrad update of `param` in place."""
    with nogil:
        adagrad_step_ptr(ptr1(param), ptr1(state_sum), cptr1(grad), param.shape[0], step, lr,
                         lr_decay, weight_decay, eps)


def rmsprop_step(floating[::1] param, floating[::1] square_avg, floating[::1] momentum_buffer,
                 floating[::1] grad_avg, const floating[::1] grad, long step, double lr=1e-2,
                 double alpha=0.99, double eps=1e-8, double weight_decay=0.0,
                 double momentum=0.0, bint centered=False):
    """One RMSprop update of `param` in place (momentum_buffer may be None when momentum == 0,
    grad_avg None unless centered; `step` is unused, kept for a common signature)."""
    with nogil:
        rmsprop_step_ptr(ptr1(param), ptr1(square_avg), ptr1(momentum_buffer), ptr1(grad_avg),
                         cptr1(grad), param.shape[0], lr, alpha, eps, weight_decay, momentum,
                         centered)
