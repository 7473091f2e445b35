"""Dense (fully connected) layer: y = x @ weightᵀ + bias, weight stored (out, in) as in PyTorch."""
from cython cimport floating

from cnet._blas cimport gemm_ld
from cnet._memview cimport ptr1, ptr2, cptr1, cptr2

# Each function also works on a block of output features [o0, o1) of a wider layer (the
# step runner's team splits large layers that way): pass y + o0, weight + o0 * in_features,
# bias + o0, dy + o0 and the block's width as out_features, with ldy = the layer's width.
# The two backward functions also work on a block of input features [c0, c1) (the team's
# split of a layer with too few outputs to split): pass x, dx, weight and dweight + c0, the
# block's width as cols, with ldx = in_features.


cdef void dense_forward_ptr(floating* y,              # (B, OUT) out, rows ldy apart
                            const floating* x,        # (B, IN)
                            const floating* weight,   # (OUT, IN)
                            const floating* bias,     # (OUT,) or NULL
                            int batch, int in_features, int out_features,
                            int ldy) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating beta = 0
    if bias != NULL:
        # Seed every row with the bias, then let gemm accumulate onto it (beta = 1).
        for i in range(batch):
            row = y + i * ldy
            for j in range(out_features):
                row[j] = bias[j]
        beta = 1
    gemm_ld(y, ldy, x, in_features, weight, in_features, batch, out_features, in_features,
            False, True, 1, beta)


cdef void dense_backward_params_ptr(floating* dweight,        # (OUT, COLS) out, ldx apart
                                    floating* dbias,          # (OUT,) out, or NULL
                                    const floating* dy,       # (B, OUT), rows ldy apart
                                    const floating* x,        # (B, COLS), rows ldx apart
                                    int batch, int cols, int out_features, int ldy, int ldx,
                                    floating beta) noexcept nogil:
    """dweight = beta*dweight + dyᵀ x, dbias = beta*dbias + Σ_rows dy."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    gemm_ld(dweight, ldx, dy, ldy, x, ldx, out_features, cols, batch, True, False, 1, beta)
    if dbias != NULL:
        if beta == 0:
            for j in range(out_features):
                dbias[j] = 0
        for i in range(batch):
            row = dy + i * ldy
            for j in range(out_features):
                dbias[j] += row[j]


cdef void dense_backward_input_ptr(floating* dx,              # (B, COLS) out, rows ldx apart
                                   const floating* dy,        # (B, OUT)
                                   const floating* weight,    # (OUT, COLS), rows ldx apart
                                   int batch, int cols, int out_features,
                                   int ldx) noexcept nogil:
    """dx = dy @ weight for a block of input features: pass dx + c0, weight + c0 and the
    block's width as cols, with ldx = in_features."""
    gemm_ld(dx, ldx, dy, out_features, weight, ldx, batch, cols, out_features,
            False, False, 1, 0)


cdef void dense_backward_ptr(floating* dweight,        # (OUT, IN) out
                             floating* dbias,          # (OUT,) out, or NULL
                             floating* dx,             # (B, IN) out, or NULL to skip
                             const floating* dy,       # (B, OUT)
                             const floating* x,        # (B, IN)
                             const floating* weight,   # (OUT, IN)
                             int batch, int in_features, int out_features,
                             floating beta) noexcept nogil:
    """beta = 1 accumulates into dweight/dbias (PyTorch's grad accumulation), 0 overwrites."""
    dense_backward_params_ptr(dweight, dbias, dy, x, batch, in_features, out_features,
                              out_features, in_features, beta)
    if dx != NULL:
        dense_backward_input_ptr(dx, dy, weight, batch, in_features, out_features,
                                 in_features)


def dense_forward(floating[:, ::1] y, const floating[:, ::1] x,
                  const floating[:, ::1] weight, const floating[::1] bias=None):
    """y = x @ weight.T + bias, written into y (B, OUT)."""
    with nogil:
        dense_forward_ptr(ptr2(y), cptr2(x), cptr2(weight), cptr1(bias),
                          x.shape[0], x.shape[1], weight.shape[0], weight.shape[0])


def dense_backward(floating[:, ::1] dweight, floating[::1] dbias, floating[:, ::1] dx,
                   const floating[:, ::1] dy, const floating[:, ::1] x,
                   const floating[:, ::1] weight, double beta=0.0):
    """Gradients of a dense layer: dx = dy @ weight (skipped when dx is None),
    dweight = beta*dweight + dyᵀ x, dbias = beta*dbias + Σ_rows dy (skipped when None)."""
    with nogil:
        dense_backward_ptr(ptr2(dweight), ptr1(dbias), ptr2(dx),
                           cptr2(dy), cptr2(x), cptr2(weight),
                           x.shape[0], x.shape[1], weight.shape[0], <floating>beta)
