"""Optimizer updates: one loop over a flat span of parameters, gradients and state.

The rules and the order of floating-point operations follow PyTorch's single-tensor
implementations (torch/optim/sgd.py, adam.py), so trajectories agree to round-off.
`step` counts from 1 (the first update is step 1), as PyTorch's state["step"] does.
"""
from cython cimport floating
from libc.math cimport pow, sqrt, sqrtf

from cnet._memview cimport ptr1, cptr1


cdef void sgd_step_ptr(floating* param,              # (n,) in/out
                       floating* momentum_buffer,    # (n,) in/out, or NULL when momentum == 0
                       const floating* grad,         # (n,)
                       Py_ssize_t n, long step, double lr, double momentum, double dampening,
                       double weight_decay, bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, buf
    cdef floating lr_ = <floating>lr, wd = <floating>weight_decay
    cdef floating mom = <floating>momentum, keep = <floating>(1 - dampening)
    for i in range(n):
        g = grad[i]
        if weight_decay != 0:
            g = g + wd * param[i]
        if momentum != 0:
            # PyTorch starts the buffer as a copy of the first gradient (no dampening).
            buf = g if step == 1 else mom * momentum_buffer[i] + keep * g
            momentum_buffer[i] = buf
            g = g + mom * buf if nesterov else buf
        param[i] = param[i] - lr_ * g


cdef void adam_step_ptr(floating* param,             # (n,) in/out
                        floating* exp_avg,           # (n,) in/out: first moment
                        floating* exp_avg_sq,        # (n,) in/out: second moment
                        floating* max_exp_avg_sq,    # (n,) in/out, or NULL unless amsgrad
                        const floating* grad,        # (n,)
                        Py_ssize_t n, long step, double lr, double beta1, double beta2,
                        double eps, double weight_decay, bint amsgrad,
                        bint decoupled) noexcept nogil:
    """Adam, or AdamW when `decoupled` (weight decay applied to the parameter, not the gradient)."""
    cdef Py_ssize_t i
    cdef floating g, m, v, denom
    cdef double bias_correction1 = 1 - pow(beta1, <double>step)
    cdef double bias_correction2 = 1 - pow(beta2, <double>step)
    cdef floating step_size = <floating>(lr / bias_correction1)
    cdef floating bc2_sqrt = <floating>sqrt(bias_correction2)
    cdef floating one_minus_beta1 = <floating>(1 - beta1)
    cdef floating b2 = <floating>beta2, one_minus_beta2 = <floating>(1 - beta2)
    cdef floating eps_ = <floating>eps, wd = <floating>weight_decay
    cdef floating decay = <floating>(1 - lr * weight_decay)
    for i in range(n):
        g = grad[i]
        if decoupled:
            param[i] = param[i] * decay
        elif weight_decay != 0:
            g = g + wd * param[i]
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * b2 + one_minus_beta2 * (g * g)
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            if v > max_exp_avg_sq[i]:
                max_exp_avg_sq[i] = v
            v = max_exp_avg_sq[i]
        if floating is float:
            denom = sqrtf(v) / bc2_sqrt + eps_
        else:
            denom = sqrt(v) / bc2_sqrt + eps_
        param[i] = param[i] - step_size * (m / denom)


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
