"""Losses with PyTorch's semantics: fused softmax-cross-entropy (loss and dlogits in one
pass per row) against class indices or class probabilities, the element-by-element losses
(MSE, L1, Huber, BCE, BCE with logits, KL divergence) through one driver, and the triplet
margin loss. Sums accumulate in double in both dtypes."""
from cython cimport floating
from libc.math cimport INFINITY, copysign, exp, fabs, log, log1p, pow, sqrt
from libc.stdint cimport int64_t

import numpy as np

from cnet._exp cimport exp_shifted
from cnet._memview cimport ptr1, ptr2, cptr1, cptr2
from cnet._reduce cimport CNET_LANES, cnet_lanes_total, row_max, row_sum, row_sum_lanes

# The reduction codes the kernels take, by PyTorch's names ('batchmean' is KLDivLoss's own).
REDUCTIONS = {"none": REDUCTION_NONE, "mean": REDUCTION_MEAN, "sum": REDUCTION_SUM}
BATCHMEAN = REDUCTION_BATCHMEAN

# torch's BCE: logs clamped at -100, and the gradient's denominator x (1 - x) at 1e-12.
cdef double LOG_FLOOR = -100.0
cdef double BCE_GRAD_EPS = 1e-12


cdef extern from "kernels.h" nogil:
    void cnet_softplus_terms_f32(float* q, float* l, const float* x, Py_ssize_t n)
    void cnet_bce_logs_f32(float* lx, float* l1x, const float* x, Py_ssize_t n)

# Elements a row is taken in where a chunk's exponentials or logarithms are computed first
# (the element-by-element losses; exp_row without a gradient buffer): a multiple of CNET_LANES,
# so that the chunks' partial sums are those of the whole row.
cdef enum:
    CHUNK = 8 * CNET_LANES


cdef void exp_rows(floating* e, const floating* x, Py_ssize_t rows,
                   Py_ssize_t classes) noexcept nogil:
    """e = exp(x - each row's max) for a block of short rows: the shifts row by row, then
    one vectorised pass over the block (one call per 10-class row cost more than the
    exponentials; the same arithmetic as exp_row)."""
    cdef Py_ssize_t i, c
    cdef floating m
    for i in range(rows):
        m = row_max(x + i * classes, classes)
        for c in range(classes):
            e[i * classes + c] = x[i * classes + c] - m
    exp_shifted(e, e, rows * classes, 0)


cdef inline double exp_row(floating* e,              # (C,) out: exp(x - max), or NULL
                           const floating* x,        # (C,)
                           Py_ssize_t classes, double* max_out,
                           bint done) noexcept nogil:
    """Σ_c exp(x[c] - max x), with max x in max_out: log of it is the row's log-sum-exp
    less the max, the softmax is e / the sum. The exponentials go to e or, without e, to a
    small buffer a chunk at a time: the loss is the same to the last bit with or without
    its gradient. done: e already holds them (exp_rows), only the sum is left."""
    cdef Py_ssize_t c, start = 0, n
    cdef double m = row_max(x, classes)
    cdef floating chunk[CHUNK]
    cdef double acc[CNET_LANES]
    max_out[0] = m
    if e != NULL:
        if not done:
            exp_shifted(e, x, classes, <floating>m)
        return row_sum(e, classes)
    for c in range(CNET_LANES):
        acc[c] = 0
    while start < classes:
        n = min(CHUNK, classes - start)
        exp_shifted(chunk, x + start, n, <floating>m)
        row_sum_lanes(acc, chunk, n)
        start += n
    return cnet_lanes_total(acc)


cdef double softmax_cross_entropy_ptr(floating* dlogits,        # (B, C) out, or NULL to skip
                                      floating* losses,         # (B,) out, or NULL
                                      const floating* logits,   # (B, C)
                                      const int64_t* target,    # (B,) in [0, C) or ignore_index
                                      const floating* weight,   # (C,) or NULL
                                      Py_ssize_t batch, Py_ssize_t classes, int64_t ignore_index,
                                      double label_smoothing, int reduction) noexcept nogil:
    """torch.nn.functional.cross_entropy on logits. With ε = label_smoothing,
    loss_i = (1-ε) w[y_i] (-log p_{i,y_i}) + (ε/C) Σ_c w[c] (-log p_{i,c}), 0 for ignored rows.
    Returns the reduced loss (the sum for REDUCTION_NONE); 'mean' divides by Σ w[y_i] over
    the rows not ignored (NaN when that is 0, as in PyTorch). losses[i] gets loss_i and
    dlogits the gradient of the returned value (of Σ loss_i for REDUCTION_NONE)."""
    cdef Py_ssize_t i, c, y
    cdef const floating* x
    cdef floating* g = NULL
    cdef double keep = 1 - label_smoothing, smooth = label_smoothing / classes
    cdef double wsum = classes, denom = 0, scale = 1
    cdef double nll_total = 0, smooth_total = 0
    cdef double m, s, lse, wx, wy, nll, smooth_loss, a, b, coef
    # Without class weights or per-row losses only Σ_i log s_i is needed: one log of the
    # product of the s_i (each in [1, C], so the product is renormalised before it could
    # overflow) instead of a log per row, which was 5% of a small network's step.
    cdef bint per_row = losses != NULL or weight != NULL
    cdef double product = 1, logs = 0
    cdef bint block = False         # short rows: the exponentials in one pass
    if dlogits != NULL and classes < 16:
        exp_rows(dlogits, logits, batch, classes)
        block = True
    if weight != NULL:
        wsum = 0
        for c in range(classes):
            wsum += weight[c]
    if reduction == REDUCTION_MEAN:
        for i in range(batch):
            if target[i] != ignore_index:
                denom += weight[target[i]] if weight != NULL else 1
        scale = 1 / denom
    for i in range(batch):
        x = logits + i * classes
        if dlogits != NULL:
            g = dlogits + i * classes
        if target[i] == ignore_index:
            if losses != NULL:
                losses[i] = 0
            if g != NULL:
                for c in range(classes):
                    g[c] = 0
            continue
        y = <Py_ssize_t>target[i]
        # s = Σ exp(x - max) (each term kept in dlogits for the gradient) and
        # wx = Σ w[c] (x[c] - max); -log p_c = log(s) - (x[c] - max).
        s = exp_row(g, x, classes, &m, block)
        wx = 0
        if label_smoothing != 0:
            for c in range(classes):
                wx += (x[c] - m) * (weight[c] if weight != NULL else 1)
        wy = weight[y] if weight != NULL else 1
        if per_row:
            lse = log(s)
            nll = wy * (lse - (x[y] - m))
            smooth_loss = wsum * lse - wx if label_smoothing != 0 else 0
            nll_total += nll
            smooth_total += smooth_loss
            if losses != NULL:
                losses[i] = <floating>(keep * nll + smooth * smooth_loss)
        else:           # the log s_i terms are added after the loop
            product *= s
            if product > 1e280:
                logs += log(product)
                product = 1
            nll_total -= x[y] - m
            smooth_total -= wx
        if g != NULL:
            # d loss_i / d x_c = (a + b Σw) p_c - a [c == y] - b w[c], scaled by the reduction
            a = scale * keep * wy
            b = scale * smooth
            coef = (a + b * wsum) / s
            for c in range(classes):
                g[c] = <floating>(coef * g[c] - b * (weight[c] if weight != NULL else 1))
            g[y] -= <floating>a
    if not per_row:
        logs += log(product)
        nll_total += logs
        smooth_total += wsum * logs
    if reduction == REDUCTION_MEAN:
        # Each term divided separately, as PyTorch does: 0/0 is NaN even when ε > 0.
        return keep * (nll_total / denom) + smooth * (smooth_total / denom)
    return keep * nll_total + smooth * smooth_total


cdef double soft_cross_entropy_ptr(floating* dlogits,          # (B, C) out, or NULL to skip
                                   floating* losses,           # (B,) out, or NULL
                                   const floating* logits,     # (B, C)
                                   const floating* target,     # (B, C) class probabilities
                                   const floating* weight,     # (C,) or NULL
                                   Py_ssize_t batch, Py_ssize_t classes,
                                   double label_smoothing, int reduction) noexcept nogil:
    """torch.nn.functional.cross_entropy on logits against class probabilities: with
    q = (1-ε) t + ε/C, loss_i = -Σ_c w[c] q[i,c] log p[i,c]. 'mean' divides the sum by the
    batch size (not by weights, as PyTorch). Outputs as softmax_cross_entropy_ptr's."""
    cdef Py_ssize_t i, c
    cdef const floating* x
    cdef const floating* t
    cdef floating* g = NULL
    cdef double keep = 1 - label_smoothing, smooth = label_smoothing / classes
    cdef double scale = 1.0 / batch if reduction == REDUCTION_MEAN else 1.0
    cdef double total = 0, m, s, lse, wq, wq_sum, row_loss, coef
    for i in range(batch):
        x = logits + i * classes
        t = target + i * classes
        if dlogits != NULL:
            g = dlogits + i * classes
        s = exp_row(g, x, classes, &m, False)
        lse = log(s)
        wq_sum = 0
        row_loss = 0
        for c in range(classes):
            wq = (keep * t[c] + smooth) * (weight[c] if weight != NULL else 1)
            wq_sum += wq
            row_loss += wq * (lse - (x[c] - m))
        total += row_loss
        if losses != NULL:
            losses[i] = <floating>row_loss
        if g != NULL:
            # d loss_i / d x_c = p_c Σ_k w[k] q[k] - w[c] q[c]
            coef = scale * wq_sum / s
            for c in range(classes):
                wq = (keep * t[c] + smooth) * (weight[c] if weight != NULL else 1)
                g[c] = <floating>(coef * g[c] - scale * wq)
    return total * scale


cdef inline void softplus_terms(floating* q, floating* l, const floating* x,
                                Py_ssize_t n) noexcept nogil:
    """q = σ(-x) and l = log1p(e^-|x|) (log σ(x) = min(x, 0) - l): BCE with logits'
    exponentials, logarithms and divisions, a chunk at a time (in float32 by kernels.h's
    vectorised loop; libm's exp and log1p do not vectorise)."""
    cdef Py_ssize_t i
    cdef double z
    if floating is float:
        cnet_softplus_terms_f32(q, l, x, n)
    else:
        for i in range(n):
            z = exp(-fabs(x[i]))
            q[i] = (z if x[i] >= 0 else 1) / (1 + z)     # stable both ways
            l[i] = log1p(z)


cdef inline void bce_logs(floating* lx, floating* l1x, const floating* x,
                          Py_ssize_t n) noexcept nogil:
    """lx = log(x) and l1x = log1p(-x): BCE's logarithms, a chunk at a time (in float32 by
    kernels.h's vectorised loop)."""
    cdef Py_ssize_t i
    if floating is float:
        cnet_bce_logs_f32(lx, l1x, x, n)
    else:
        for i in range(n):
            lx[i] = log(x[i])
            l1x[i] = log1p(-x[i])


cdef inline void chunk_terms(int kind, floating* terms, const floating* x,
                             Py_ssize_t n) noexcept nogil:
    """A chunk's transcendental terms into terms[0:n] and terms[CHUNK:CHUNK + n], for the
    kinds that read them (BCE: bce_logs; BCE with logits: softplus_terms)."""
    if kind == LOSS_BCE:
        bce_logs(terms, terms + CHUNK, x, n)
    elif kind == LOSS_BCE_WITH_LOGITS:
        softplus_terms(terms, terms + CHUNK, x, n)


cdef inline double pointwise(int kind, const LossConfig* c, double x, double t,
                             double pos_weight, const floating* terms,
                             double* grad) noexcept nogil:
    """One element's loss for kind, and its derivative w.r.t. x in grad[0]. terms: this
    element's transcendental terms, terms[0] and terms[CHUNK], computed a chunk at a time
    (BCE: bce_logs; BCE with logits: softplus_terms; unused by the other kinds)."""
    cdef double r, a, m, e, log_weight, log_sig, lx, l1x, denom
    if kind == LOSS_MSE:
        r = x - t
        grad[0] = 2 * r
        return r * r
    if kind == LOSS_L1:
        r = x - t
        a = fabs(r)
        grad[0] = copysign(1.0, r) if a > 0 else r    # sign(r); 0 and NaN as they are
        return a
    if kind == LOSS_HUBER:
        # With m = min(|r|, delta): m (|r| - m/2) is 0.5 r² inside and delta (|r| - delta/2)
        # outside, and the gradient is r clamped to ±delta, without a branch that random
        # residuals mispredict. A NaN residual keeps m NaN, so loss and gradient are NaN.
        r = x - t
        a = fabs(r)
        m = c.delta if a > c.delta else a
        grad[0] = copysign(m, r)
        return m * (a - 0.5 * m)
    if kind == LOSS_BCE:
        # -(t log x + (1 - t) log(1 - x)), each log at least -100; torch's gradient
        # (x - t) / max(x (1 - x), 1e-12). Comparisons keep NaN (fmax would drop it).
        lx = terms[0]
        if lx < LOG_FLOOR:
            lx = LOG_FLOOR
        l1x = terms[CHUNK]
        if l1x < LOG_FLOOR:
            l1x = LOG_FLOOR
        denom = (1 - x) * x
        if denom < BCE_GRAD_EPS:
            denom = BCE_GRAD_EPS
        grad[0] = (x - t) / denom
        return (t - 1) * l1x - t * lx
    if kind == LOSS_BCE_WITH_LOGITS:
        # torch: (1 - t) x - (1 + (pw - 1) t) log σ(x), log σ(x) = min(x, 0) - log1p(e^-|x|)
        log_weight = 1 + (pos_weight - 1) * t
        log_sig = 0.5 * (x - fabs(x)) - terms[CHUNK]    # min(x, 0) exactly, no branch
        grad[0] = (1 - t) - log_weight * terms[0]
        return (1 - t) * x - log_weight * log_sig
    # LOSS_KL_DIV: torch's kl_div, xlogy(t, t) - t x (0 where t == 0), or e^t (t - x)
    if c.log_target:
        e = exp(t)
        grad[0] = -e
        return e * (t - x)
    grad[0] = -t
    return (t * log(t) if t != 0 else 0) - t * x


cdef inline double pointwise_rows(int kind, const LossConfig* c,
                                  floating* dinput, floating* losses, const floating* input,
                                  const floating* target, Py_ssize_t rows, Py_ssize_t cols,
                                  double scale) noexcept nogil:
    """pointwise_loss_ptr's loop for one kind: called with each kind as a constant, so the
    compiler makes one loop per kind without the others' branches. The sum runs over
    CNET_LANES partial sums, not one chain of dependent additions."""
    cdef const floating* weight = <const floating*>c.weight
    cdef const floating* pos_weight = <const floating*>c.pos_weight
    cdef Py_ssize_t r, j, k, start, n, block, count, whole
    cdef double value, grad, w, pw = 1
    cdef double acc[CNET_LANES]
    cdef floating terms[2 * CHUNK]        # a chunk's logarithms or exponentials (pointwise)
    cdef bint chunked = kind == LOSS_BCE or kind == LOSS_BCE_WITH_LOGITS   # uses terms
    for j in range(CNET_LANES):
        acc[j] = 0
    if kind != LOSS_KL_DIV and dinput != NULL and losses == NULL and weight == NULL \
            and pos_weight == NULL:
        # The step runner's case: the gradient and the sum, nothing per element to look up.
        # The rows run as one (in chunks of CHUNK elements where a chunk's logarithms or
        # exponentials come first), in whole runs of CNET_LANES elements that the compiler
        # can keep in vector lanes, every element to the partial sum the loop below gives it
        # (the same sum to the last bit).
        n = rows * cols
        start = 0
        while start < n:
            count = min(CHUNK, n - start) if chunked else n
            chunk_terms(kind, terms, input + start, count)
            whole = count - count % CNET_LANES
            for block in range(whole // CNET_LANES):
                for j in range(CNET_LANES):
                    k = block * CNET_LANES + j
                    acc[j] += pointwise(kind, c, input[start + k], target[start + k], pw,
                                        terms + (k if chunked else 0), &grad)
                    dinput[start + k] = <floating>(scale * grad)
            for k in range(whole, count):
                acc[(start + k) % CNET_LANES] += pointwise(kind, c, input[start + k],
                                                           target[start + k], pw,
                                                           terms + (k if chunked else 0), &grad)
                dinput[start + k] = <floating>(scale * grad)
            start += count
        return cnet_lanes_total(acc)
    for r in range(rows):
        start = 0
        while start < cols:
            n = min(CHUNK, cols - start)
            chunk_terms(kind, terms, input + r * cols + start, n)
            for j in range(start, start + n):
                k = r * cols + j
                if pos_weight != NULL:
                    pw = pos_weight[j * c.pos_weight_stride]
                value = pointwise(kind, c, input[k], target[k], pw, terms + (j - start),
                                  &grad)
                if weight != NULL:
                    w = weight[r * c.weight_row_stride + j * c.weight_col_stride]
                    value *= w
                    grad *= w
                acc[k % CNET_LANES] += value
                if losses != NULL:
                    losses[k] = <floating>value
                if dinput != NULL:
                    dinput[k] = <floating>(scale * grad)
            start += n
    return cnet_lanes_total(acc)


cdef double pointwise_loss_ptr(const LossConfig* c,
                               floating* dinput,          # (rows, cols) out, or NULL to skip
                               floating* losses,          # (rows, cols) out, or NULL
                               const floating* input,     # (rows, cols)
                               const floating* target,    # (rows, cols)
                               Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """The element-by-element loss c.kind, each element times its weight (c.weight at the
    config's strides, when set). Returns the sum, divided by rows * cols for 'mean' and by
    rows for 'batchmean'; losses gets each element's loss and dinput the gradient of the
    returned value (of the sum for REDUCTION_NONE)."""
    cdef double scale = 1, total
    if c.reduction == REDUCTION_MEAN:
        scale = 1.0 / (rows * cols)
    elif c.reduction == REDUCTION_BATCHMEAN:
        scale = 1.0 / rows
    if c.kind == LOSS_MSE:
        total = pointwise_rows(LOSS_MSE, c, dinput, losses, input, target, rows, cols, scale)
    elif c.kind == LOSS_L1:
        total = pointwise_rows(LOSS_L1, c, dinput, losses, input, target, rows, cols, scale)
    elif c.kind == LOSS_HUBER:
        total = pointwise_rows(LOSS_HUBER, c, dinput, losses, input, target, rows, cols, scale)
    elif c.kind == LOSS_BCE:
        total = pointwise_rows(LOSS_BCE, c, dinput, losses, input, target, rows, cols, scale)
    elif c.kind == LOSS_BCE_WITH_LOGITS:
        total = pointwise_rows(LOSS_BCE_WITH_LOGITS, c, dinput, losses, input, target, rows,
                               cols, scale)
    else:
        total = pointwise_rows(LOSS_KL_DIV, c, dinput, losses, input, target, rows, cols,
                               scale)
    return total * scale


cdef inline double distance(const floating* x, const floating* y, Py_ssize_t dim, double p,
                            double eps) noexcept nogil:
    """torch's pairwise_distance: ||x - y + eps||_p (p may be INFINITY)."""
    cdef Py_ssize_t j
    cdef double a, total = 0
    for j in range(dim):
        a = fabs(<double>x[j] - <double>y[j] + eps)
        if p == 2:
            total += a * a
        elif p == 1:
            total += a
        elif p == INFINITY:
            if a > total or a != a:      # keeps a NaN once seen
                total = a
        else:
            total += pow(a, p)
    if p == 2:
        return sqrt(total)
    if p == 1 or p == INFINITY:
        return total
    return pow(total, 1 / p)


cdef inline void add_distance_grad(floating* gx, floating* gy, double coef,
                                   const floating* x, const floating* y, Py_ssize_t dim,
                                   double p, double eps, double norm) noexcept nogil:
    """gx += coef ∂d/∂x and gy -= coef ∂d/∂x, for d = ||x - y + eps||_p == norm. As torch's
    norm backward: nothing where norm is 0, the L∞ gradient shared among tied maxima."""
    cdef Py_ssize_t j, ties = 0
    cdef double v, a, g
    if coef == 0 or norm == 0:
        return
    if p == INFINITY:
        for j in range(dim):
            a = fabs(<double>x[j] - <double>y[j] + eps)
            ties += a == norm or a != a
    for j in range(dim):
        v = <double>x[j] - <double>y[j] + eps
        a = fabs(v)
        if p == 2:
            g = v / norm
        elif a == 0:
            g = 0
        elif p == 1:
            g = copysign(1.0, v)
        elif p == INFINITY:
            g = copysign(1.0, v) / ties if a == norm or a != a else 0
        else:
            g = copysign(pow(a / norm, p - 1), v)
        gx[j] += <floating>(coef * g)
        gy[j] -= <floating>(coef * g)


cdef double triplet_margin_ptr(floating* danchor,           # (B, D) out, or NULL to skip
                               floating* dpositive,         # (B, D) out, NULL with danchor
                               floating* dnegative,         # (B, D) out, NULL with danchor
                               floating* losses,            # (B,) out, or NULL
                               const floating* anchor,      # (B, D)
                               const floating* positive,    # (B, D)
                               const floating* negative,    # (B, D)
                               Py_ssize_t batch, Py_ssize_t dim, double margin, double p,
                               double eps, bint swap, int reduction) noexcept nogil:
    """torch.nn.functional.triplet_margin_loss: loss_i = max(d(a, p) - d(a, n) + margin, 0)
    with d the pairwise distance; swap uses min(d(a, n), d(p, n)) for d(a, n) (a tie shares
    the gradient, as torch's min). Returns the sum, divided by B for 'mean'; the gradients
    are those of the returned value."""
    cdef Py_ssize_t i, j
    cdef const floating* a
    cdef const floating* pos
    cdef const floating* neg
    cdef floating* ga
    cdef floating* gp
    cdef floating* gn
    cdef double scale = 1.0 / batch if reduction == REDUCTION_MEAN else 1.0
    cdef double total = 0, d_ap, d_an, d_pn = 0, d_neg, value, w_an, w_pn
    for i in range(batch):
        a = anchor + i * dim
        pos = positive + i * dim
        neg = negative + i * dim
        d_ap = distance(a, pos, dim, p, eps)
        d_an = distance(a, neg, dim, p, eps)
        d_neg = d_an
        w_an, w_pn = 1.0, 0.0
        if swap:
            d_pn = distance(pos, neg, dim, p, eps)
            if d_pn < d_an:
                d_neg, w_an, w_pn = d_pn, 0.0, 1.0
            elif d_pn == d_an:
                w_an, w_pn = 0.5, 0.5
        value = margin + d_ap - d_neg
        if value < 0:
            value = 0       # torch's clamp_min: NaN stays NaN
        total += value
        if losses != NULL:
            losses[i] = <floating>value
        if danchor == NULL:
            continue
        ga, gp, gn = danchor + i * dim, dpositive + i * dim, dnegative + i * dim
        for j in range(dim):
            ga[j] = gp[j] = gn[j] = 0
        if margin + d_ap - d_neg >= 0:       # clamp_min passes the gradient at 0
            add_distance_grad(ga, gp, scale, a, pos, dim, p, eps, d_ap)
            add_distance_grad(ga, gn, -scale * w_an, a, neg, dim, p, eps, d_an)
            if swap:
                add_distance_grad(gp, gn, -scale * w_pn, pos, neg, dim, p, eps, d_pn)
    return total * scale


cdef object per_column(object values, object dtype):
    return None if values is None else np.ascontiguousarray(np.reshape(values, -1), dtype)


cdef size_t address(object array):
    return 0 if array is None else <size_t>array.ctypes.data


cdef object fill_loss_config(LossConfig* c, object loss, object dtype):
    """Fill c from a loss object's _kernel_spec(); returns the arrays c points into, which
    the caller must keep alive (weights converted to the model's dtype). A spec's "weight"
    and "pos_weight" are None or 1-D: one value per class (cross-entropy) or per output
    column, or a single value for every column (BCE)."""
    spec = loss._kernel_spec()
    c.kind = spec["kind"]
    c.class_targets = spec["kind"] == LOSS_CROSS_ENTROPY
    c.reduction = spec["reduction"]
    c.ignore_index = spec.get("ignore_index", -100)
    c.label_smoothing = spec.get("label_smoothing", 0.0)
    c.delta = spec.get("delta", 1.0)
    c.log_target = spec.get("log_target", False)
    weight = per_column(spec.get("weight"), dtype)
    pos_weight = per_column(spec.get("pos_weight"), dtype)
    c.weight = <void*>address(weight)
    c.weight_row_stride = 0
    c.weight_col_stride = 0 if weight is None or weight.size == 1 else 1
    c.pos_weight = <void*>address(pos_weight)
    c.pos_weight_stride = 0 if pos_weight is None or pos_weight.size == 1 else 1
    return [weight, pos_weight]


cdef double loss_ptr(const LossConfig* c,
                     floating* grad,            # (rows, cols) out: d loss / d output
                     const floating* output,    # (rows, cols)
                     const void* target,        # (rows,) int64 or (rows, cols) floating
                     Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """The reduced loss of one batch and its gradient, for the step runner."""
    if c.kind == LOSS_CROSS_ENTROPY:
        return softmax_cross_entropy_ptr(grad, <floating*>NULL, output, <const int64_t*>target,
                                         <const floating*>c.weight, rows, cols,
                                         c.ignore_index, c.label_smoothing, c.reduction)
    if c.kind == LOSS_SOFT_CROSS_ENTROPY:
        return soft_cross_entropy_ptr(grad, <floating*>NULL, output, <const floating*>target,
                                      <const floating*>c.weight, rows, cols,
                                      c.label_smoothing, c.reduction)
    return pointwise_loss_ptr(c, grad, <floating*>NULL, output, <const floating*>target,
                              rows, cols)


# ---- Python entry points (the cnet.losses objects and the tests call these) ---------------

def softmax_cross_entropy(dlogits, losses, logits, target, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction=REDUCTION_MEAN):
    """Cross-entropy of logits (B, C) against class indices target (int64, (B,)): returns the
    reduced loss, writes per-row losses into losses (B,) and the gradient into dlogits (B, C);
    either output may be None. weight (C,) or None."""
    # Fused dispatch follows the first fused argument, so the typed twin takes logits first.
    return _softmax_cross_entropy(logits, dlogits, losses, target, weight, ignore_index,
                                  label_smoothing, reduction)


def soft_cross_entropy(dlogits, losses, logits, target, weight=None, label_smoothing=0.0,
                       reduction=REDUCTION_MEAN):
    """Cross-entropy of logits (B, C) against class probabilities target (B, C), of logits'
    dtype: returns the reduced loss, writes per-row losses (B,) and dlogits (B, C) (either
    may be None). weight (C,) or None."""
    return _soft_cross_entropy(logits, dlogits, losses, target, weight, label_smoothing,
                               reduction)


# The element-by-element losses take input, target (and dinput, losses) of one shape:
# (rows, cols), or (N,) read as one row. weight broadcasts to that shape, pos_weight to
# (cols,); all of input's dtype.

def mse_loss(dinput, losses, input, target, reduction=REDUCTION_MEAN):
    """Σ (input - target)², averaged for 'mean'; returns the reduced loss, writes squared
    errors into losses and the gradient into dinput (either may be None)."""
    return _pointwise(LOSS_MSE, dinput, losses, input, target, reduction=reduction)


def l1_loss(dinput, losses, input, target, reduction=REDUCTION_MEAN):
    """Σ |input - target|, averaged for 'mean' (gradient sign(input - target), 0 at 0)."""
    return _pointwise(LOSS_L1, dinput, losses, input, target, reduction=reduction)


def huber_loss(dinput, losses, input, target, delta=1.0, reduction=REDUCTION_MEAN):
    """Huber: ½ r² where |r| < delta, delta (|r| - ½ delta) elsewhere, r = input - target."""
    return _pointwise(LOSS_HUBER, dinput, losses, input, target, delta=delta,
                      reduction=reduction)


def bce_loss(dinput, losses, input, target, weight=None, reduction=REDUCTION_MEAN):
    """Binary cross-entropy of probabilities input in [0, 1]: -w (t log x + (1-t) log(1-x)),
    logs clamped at -100, as PyTorch."""
    return _pointwise(LOSS_BCE, dinput, losses, input, target, weight, reduction=reduction)


def bce_with_logits_loss(dinput, losses, input, target, weight=None, pos_weight=None,
                         reduction=REDUCTION_MEAN):
    """Binary cross-entropy of logits, stable for any logit:
    -w (pw t log σ(x) + (1 - t) log(1 - σ(x))), pos_weight pw per column."""
    return _pointwise(LOSS_BCE_WITH_LOGITS, dinput, losses, input, target, weight, pos_weight,
                      reduction=reduction)


def kl_div_loss(dinput, losses, input, target, log_target=False, reduction=REDUCTION_MEAN):
    """KL divergence with input log-probabilities: t (log t - x) (0 where t is 0), or
    e^t (t - x) with log_target; REDUCTION_BATCHMEAN divides the sum by rows."""
    return _pointwise(LOSS_KL_DIV, dinput, losses, input, target, log_target=log_target,
                      reduction=reduction)


def triplet_margin_loss(danchor, dpositive, dnegative, losses, anchor, positive, negative,
                        margin=1.0, p=2.0, eps=1e-6, swap=False, reduction=REDUCTION_MEAN):
    """Triplet margin loss of embeddings (B, D): returns the reduced loss, writes per-row
    losses (B,) and the three gradients (B, D) (all three or none may be None)."""
    return _triplet_margin_loss(anchor, positive, negative, danchor, dpositive, dnegative,
                                losses, margin, p, eps, swap, reduction)


def _pointwise(int kind, dinput, losses, input, target, weight=None, pos_weight=None,
               double delta=1.0, bint log_target=False, int reduction=REDUCTION_MEAN):
    cdef LossConfig c
    shape = (1, input.shape[0]) if input.ndim == 1 else input.shape
    c.kind, c.reduction, c.delta, c.log_target = kind, reduction, delta, log_target
    c.weight = c.pos_weight = NULL
    c.weight_row_stride = c.weight_col_stride = c.pos_weight_stride = 0
    if weight is not None:
        weight = np.broadcast_to(np.asarray(weight, input.dtype), shape)
        c.weight = <void*>address(weight)
        c.weight_row_stride = weight.strides[0] // weight.itemsize
        c.weight_col_stride = weight.strides[1] // weight.itemsize
    if pos_weight is not None:
        pos_weight = np.broadcast_to(np.asarray(pos_weight, input.dtype), shape[1:])
        c.pos_weight = <void*>address(pos_weight)
        c.pos_weight_stride = pos_weight.strides[0] // pos_weight.itemsize
    dinput, losses, input, target = [None if a is None else a.reshape(shape)
                                     for a in (dinput, losses, input, target)]
    if input.dtype == np.float64:
        return _run_pointwise[double](&c, dinput, losses, input, target)
    return _run_pointwise[float](&c, dinput, losses, input, target)


cdef double _run_pointwise(const LossConfig* c, floating[:, ::1] dinput,
                           floating[:, ::1] losses, const floating[:, ::1] input,
                           const floating[:, ::1] target):
    cdef double loss
    with nogil:
        loss = pointwise_loss_ptr(c, ptr2(dinput), ptr2(losses), cptr2(input), cptr2(target),
                                  input.shape[0], input.shape[1])
    return loss


def _softmax_cross_entropy(const floating[:, ::1] logits, floating[:, ::1] dlogits,
                           floating[::1] losses, const int64_t[::1] target,
                           const floating[::1] weight, int64_t ignore_index,
                           double label_smoothing, int reduction):
    cdef double loss
    cdef const int64_t* target_ptr = &target[0] if target.shape[0] > 0 else NULL
    with nogil:
        loss = softmax_cross_entropy_ptr(ptr2(dlogits), ptr1(losses), cptr2(logits), target_ptr,
                                         cptr1(weight), logits.shape[0], logits.shape[1],
                                         ignore_index, label_smoothing, reduction)
    return loss


def _soft_cross_entropy(const floating[:, ::1] logits, floating[:, ::1] dlogits,
                        floating[::1] losses, const floating[:, ::1] target,
                        const floating[::1] weight, double label_smoothing, int reduction):
    cdef double loss
    with nogil:
        loss = soft_cross_entropy_ptr(ptr2(dlogits), ptr1(losses), cptr2(logits), cptr2(target),
                                      cptr1(weight), logits.shape[0], logits.shape[1],
                                      label_smoothing, reduction)
    return loss


def _triplet_margin_loss(const floating[:, ::1] anchor, const floating[:, ::1] positive,
                         const floating[:, ::1] negative, floating[:, ::1] danchor,
                         floating[:, ::1] dpositive, floating[:, ::1] dnegative,
                         floating[::1] losses, double margin, double p, double eps, bint swap,
                         int reduction):
    cdef double loss
    with nogil:
        loss = triplet_margin_ptr(ptr2(danchor), ptr2(dpositive), ptr2(dnegative), ptr1(losses),
                                  cptr2(anchor), cptr2(positive), cptr2(negative),
                                  anchor.shape[0], anchor.shape[1], margin, p, eps, swap,
                                  reduction)
    return loss
