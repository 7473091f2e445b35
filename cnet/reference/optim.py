import numpy as np


def sgd_step(param, momentum_buffer, grad, step, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False):
    """One SGD update of `param` in place (PyTorch's rule)."""
    g = grad + weight_decay * param if weight_decay != 0 else grad
    if momentum != 0:
        if step == 1:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * g


def adam_step(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr=1e-3, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    """One Adam (or AdamW when `decoupled`) update of `param` in place (PyTorch's rule)."""
    if decoupled:
        param *= 1 - lr * weight_decay
    elif weight_decay != 0:
        grad = grad + weight_decay * param
    exp_avg += (1 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    second = max_exp_avg_sq if amsgrad else exp_avg_sq
    denom = np.sqrt(second) / np.sqrt(1 - beta2**step) + eps
    param -= (lr / (1 - beta1**step)) * (exp_avg / denom)
