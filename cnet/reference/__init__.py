"""Pure-NumPy twins of the compiled kernels: same names, same arguments, same results.

They are the test oracle and the benchmark baseline, written the way a careful NumPy
programmer would write them (vectorised, `out=` where NumPy offers it).
"""
from cnet.reference.activations import (
    identity_backward, identity_forward, leaky_relu_backward, leaky_relu_forward,
    relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward,
    softmax_forward, step_forward, tanh_backward, tanh_forward)
from cnet.reference.blas import matmul
from cnet.reference.dense import dense_backward, dense_forward
from cnet.reference.losses import (
    bce_loss, bce_with_logits_loss, huber_loss, kl_div_loss, l1_loss, mse_loss,
    soft_cross_entropy, softmax_cross_entropy, triplet_margin_loss)
from cnet.reference.optim import (adagrad_step, adam_step, clip_grad_norm, rmsprop_step,
                                  sgd_step)
from cnet.reference.training import ReferenceMLP  # noqa: F401  (the NumPy training baseline)

__all__ = ["matmul", "dense_forward", "dense_backward", "sgd_step", "adam_step", "clip_grad_norm",
           "adagrad_step", "rmsprop_step",
           "softmax_cross_entropy", "soft_cross_entropy", "mse_loss", "l1_loss", "huber_loss",
           "bce_loss", "bce_with_logits_loss", "kl_div_loss", "triplet_margin_loss",
           "identity_forward", "identity_backward", "relu_forward", "relu_backward",
           "leaky_relu_forward", "leaky_relu_backward", "sigmoid_forward", "sigmoid_backward",
           "tanh_forward", "tanh_backward", "step_forward", "softmax_forward", "softmax_backward"]
