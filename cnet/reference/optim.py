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


def adagrad_step(param, state_sum, grad, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 eps=1e-10):
    """One Adagrad update of `param` in place (PyTorch's rule)."""
    if weight_decay != 0:
        grad = grad + weight_decay * param
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += grad * grad
    param -= clr * grad / (np.sqrt(state_sum) + eps)


def rmsprop_step(param, square_avg, momentum_buffer, grad_avg, grad, step, lr=1e-2, alpha=0.99,
                 eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    """One RMSprop update of `param` in place (PyTorch's rule; `step` is unused)."""
    if weight_decay != 0:
        grad = grad + weight_decay * param
    square_avg *= alpha
    square_avg += (1 - alpha) * grad * grad
    if centered:
        grad_avg += (1 - alpha) * (grad - grad_avg)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += grad / avg
        param -= lr * momentum_buffer
    else:
        param -= lr * grad / avg


def clip_grad_norm(grad, max_norm):
    """Scale `grad` in place so that its L2 norm is at most max_norm (PyTorch's rule:
    coefficient max_norm / (norm + 1e-6), capped at 1); returns the norm before clipping."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    coef = grad.dtype.type(max_norm / (norm + 1e-6))
    if coef < 1:
        grad *= coef
    return norm
