"""Activation functions: y = f(x) and dx = dy ⊙ f'(x), softmax per row.

Every kernel reads and writes contiguous row-major (rows, cols) arrays and is correct in
place: y may be x in forward, dx may be dy in backward. Backward takes both the input x
and the output y and uses the cheaper, more exact one (y for ReLU, sigmoid, tanh and
softmax; x for leaky ReLU, so negative slopes work too).
"""
from cython cimport floating
from libc.string cimport memcpy

from cnet._exp cimport exp_shifted, sigmoid, tanh
from cnet._memview cimport ptr2, cptr2
from cnet._reduce cimport row_dot, row_max, row_sum


cdef inline void _copy(floating* out, const floating* src, Py_ssize_t n) noexcept nogil:
    if <const floating*>out != src:
        memcpy(out, src, n * sizeof(floating))


cdef void identity_forward_ptr(floating* y,            # (n,) out
                               const floating* x,      # (n,)
                               Py_ssize_t n) noexcept nogil:
    _copy(y, x, n)


cdef void identity_backward_ptr(floating* dx,          # (n,) out
                                const floating* dy,    # (n,)
                                Py_ssize_t n) noexcept nogil:
    _copy(dx, dy, n)


cdef void relu_forward_ptr(floating* y,                # (n,) out
                           const floating* x,          # (n,)
                           Py_ssize_t n) noexcept nogil:
    """y = max(x, 0); NaN stays NaN."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = 0 if x[i] < 0 else x[i]


cdef void relu_backward_ptr(floating* dx,              # (n,) out
                            const floating* dy,        # (n,)
                            const floating* y,         # (n,) forward output
                            Py_ssize_t n) noexcept nogil:
    """dx = dy where y > 0 (that is, x > 0), else 0."""
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = dy[i]    # loaded unconditionally, so the select vectorises
        dx[i] = g if y[i] > 0 else 0


cdef void leaky_relu_forward_ptr(floating* y,          # (n,) out
                                 const floating* x,    # (n,)
                                 Py_ssize_t n, floating slope) noexcept nogil:
    """y = max(x, 0) + slope * min(x, 0), that is x where x > 0, else slope * x.
    (Written with two selects and no branch on the product, so that it vectorises.)"""
    cdef Py_ssize_t i
    cdef floating v, zero = 0
    for i in range(n):
        v = x[i]
        y[i] = (v if v > 0 else zero) + slope * (v if v < 0 else zero)


cdef void leaky_relu_backward_ptr(floating* dx,        # (n,) out
                                  const floating* dy,  # (n,)
                                  const floating* x,   # (n,) forward input
                                  Py_ssize_t n, floating slope) noexcept nogil:
    """dx = dy where x > 0, else slope * dy."""
    cdef Py_ssize_t i
    cdef floating one = 1
    for i in range(n):
        dx[i] = dy[i] * (one if x[i] > 0 else slope)    # a select of constants: vectorises


cdef void sigmoid_forward_ptr(floating* y,             # (n,) out
                              const floating* x,       # (n,)
                              Py_ssize_t n) noexcept nogil:
    """y = 1 / (1 + e^-x), in the two-branch form that never overflows: with
    z = e^-|x| in (0, 1], y = 1 / (1 + z) for x >= 0 and z / (1 + z) for x < 0."""
    sigmoid(y, x, n)


cdef void sigmoid_backward_ptr(floating* dx,           # (n,) out
                               const floating* dy,     # (n,)
                               const floating* y,      # (n,) forward output
                               Py_ssize_t n) noexcept nogil:
    """dx = dy * y * (1 - y)."""
    cdef Py_ssize_t i
    cdef floating one = 1
    for i in range(n):
        dx[i] = dy[i] * y[i] * (one - y[i])


cdef void tanh_forward_ptr(floating* y,                # (n,) out
                           const floating* x,          # (n,)
                           Py_ssize_t n) noexcept nogil:
    tanh(y, x, n)


cdef void tanh_backward_ptr(floating* dx,              # (n,) out
                            const floating* dy,        # (n,)
                            const floating* y,         # (n,) forward output
                            Py_ssize_t n) noexcept nogil:
    """dx = dy * (1 - y²)."""
    cdef Py_ssize_t i
    cdef floating one = 1
    for i in range(n):
        dx[i] = dy[i] * (one - y[i] * y[i])


cdef void step_forward_ptr(floating* y,                # (n,) out
                           const floating* x,          # (n,)
                           Py_ssize_t n) noexcept nogil:
    """Heaviside step: y = 1 where x >= 0 (so step(0) = step(-0.0) = 1), else 0 (NaN gives 0).
    It has no backward: its derivative is 0 wherever it exists, useless for training."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = 1 if x[i] >= 0 else 0


cdef void softmax_forward_ptr(floating* y,             # (rows, cols) out
                              const floating* x,       # (rows, cols)
                              Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """y = e^(x - max) / Σ e^(x - max) per row: the largest exponent is 0, so nothing
    overflows and the sum is at least 1."""
    cdef Py_ssize_t i, j
    cdef const floating* xr
    cdef floating* yr
    cdef floating top, scale
    for i in range(rows):
        xr = x + i * cols
        yr = y + i * cols
        top = row_max(xr, cols)
        exp_shifted(yr, xr, cols, top)
        scale = <floating>(1 / row_sum(yr, cols))
        for j in range(cols):
            yr[j] *= scale


cdef void softmax_backward_ptr(floating* dx,           # (rows, cols) out
                               const floating* dy,     # (rows, cols)
                               const floating* y,      # (rows, cols) forward output
                               Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """The Jacobian-vector product per row: dx = y ⊙ (dy - Σ_j dy_j y_j)."""
    cdef Py_ssize_t i, j
    cdef const floating* dyr
    cdef const floating* yr
    cdef floating* dxr
    cdef floating dot
    for i in range(rows):
        dyr = dy + i * cols
        yr = y + i * cols
        dxr = dx + i * cols
        dot = <floating>row_dot(dyr, yr, cols)
        for j in range(cols):
            dxr[j] = yr[j] * (dyr[j] - dot)


cdef void activation_forward(int kind,
                             floating* y,              # (rows, cols) out, may be x
                             const floating* x,        # (rows, cols)
                             Py_ssize_t rows, Py_ssize_t cols,
                             double slope) noexcept nogil:
    """y = f(x) for the activation `kind` (ACT_*); slope is leaky ReLU's negative slope."""
    cdef Py_ssize_t n = rows * cols
    if rows <= 0 or cols <= 0:
        return
    if kind == ACT_IDENTITY:
        identity_forward_ptr(y, x, n)
    elif kind == ACT_RELU:
        relu_forward_ptr(y, x, n)
    elif kind == ACT_LEAKY_RELU:
        leaky_relu_forward_ptr(y, x, n, <floating>slope)
    elif kind == ACT_SIGMOID:
        sigmoid_forward_ptr(y, x, n)
    elif kind == ACT_TANH:
        tanh_forward_ptr(y, x, n)
    elif kind == ACT_STEP:
        step_forward_ptr(y, x, n)
    elif kind == ACT_SOFTMAX:
        softmax_forward_ptr(y, x, rows, cols)


cdef void activation_backward(int kind,
                              floating* dx,            # (rows, cols) out, may be dy
                              const floating* dy,      # (rows, cols)
                              const floating* x,       # (rows, cols) forward input
                              const floating* y,       # (rows, cols) forward output
                              Py_ssize_t rows, Py_ssize_t cols,
                              double slope) noexcept nogil:
    """dx = dy ⊙ f'(x) for the activation `kind` (ACT_*). ACT_STEP has no backward and,
    like an unknown kind, leaves dx untouched; the Python layer never asks for it."""
    cdef Py_ssize_t n = rows * cols
    if rows <= 0 or cols <= 0:
        return
    if kind == ACT_IDENTITY:
        identity_backward_ptr(dx, dy, n)
    elif kind == ACT_RELU:
        relu_backward_ptr(dx, dy, y, n)
    elif kind == ACT_LEAKY_RELU:
        leaky_relu_backward_ptr(dx, dy, x, n, <floating>slope)
    elif kind == ACT_SIGMOID:
        sigmoid_backward_ptr(dx, dy, y, n)
    elif kind == ACT_TANH:
        tanh_backward_ptr(dx, dy, y, n)
    elif kind == ACT_SOFTMAX:
        softmax_backward_ptr(dx, dy, y, rows, cols)


# The def wrappers below go through these two, one line each.
cdef inline void _forward(int kind, floating[:, ::1] y, const floating[:, ::1] x,
                          double slope=0.0):
    with nogil:
        activation_forward(kind, ptr2(y), cptr2(x), y.shape[0], y.shape[1], slope)


cdef inline void _backward(int kind, floating[:, ::1] dx, const floating[:, ::1] dy,
                           const floating[:, ::1] x, const floating[:, ::1] y,
                           double slope=0.0):
    with nogil:
        activation_backward(kind, ptr2(dx), cptr2(dy), cptr2(x), cptr2(y),
                            dx.shape[0], dx.shape[1], slope)


def identity_forward(floating[:, ::1] y, const floating[:, ::1] x):
    """y = x (nothing to do when y is x)."""
    _forward(ACT_IDENTITY, y, x)


def identity_backward(floating[:, ::1] dx, const floating[:, ::1] dy,
                      const floating[:, ::1] x, const floating[:, ::1] y):
    """dx = dy."""
    _backward(ACT_IDENTITY, dx, dy, x, y)


def relu_forward(floating[:, ::1] y, const floating[:, ::1] x):
    """y = max(x, 0)."""
    _forward(ACT_RELU, y, x)


def relu_backward(floating[:, ::1] dx, const floating[:, ::1] dy,
                  const floating[:, ::1] x, const floating[:, ::1] y):
    """dx = dy where y > 0, else 0."""
    _backward(ACT_RELU, dx, dy, x, y)


def leaky_relu_forward(floating[:, ::1] y, const floating[:, ::1] x,
                       double negative_slope=0.01):
    """y = x where x > 0, else negative_slope * x."""
    _forward(ACT_LEAKY_RELU, y, x, negative_slope)


def leaky_relu_backward(floating[:, ::1] dx, const floating[:, ::1] dy,
                        const floating[:, ::1] x, const floating[:, ::1] y,
                        double negative_slope=0.01):
    """dx = dy where x > 0, else negative_slope * dy."""
    _backward(ACT_LEAKY_RELU, dx, dy, x, y, negative_slope)


def sigmoid_forward(floating[:, ::1] y, const floating[:, ::1] x):
    """y = 1 / (1 + exp(-x)), without overflow for any x."""
    _forward(ACT_SIGMOID, y, x)


def sigmoid_backward(floating[:, ::1] dx, const floating[:, ::1] dy,
                     const floating[:, ::1] x, const floating[:, ::1] y):
    """dx = dy * y * (1 - y)."""
    _backward(ACT_SIGMOID, dx, dy, x, y)


def tanh_forward(floating[:, ::1] y, const floating[:, ::1] x):
    """y = tanh(x)."""
    _forward(ACT_TANH, y, x)


def tanh_backward(floating[:, ::1] dx, const floating[:, ::1] dy,
                  const floating[:, ::1] x, const floating[:, ::1] y):
    """dx = dy * (1 - y²)."""
    _backward(ACT_TANH, dx, dy, x, y)


def step_forward(floating[:, ::1] y, const floating[:, ::1] x):
    """y = 1 where x >= 0 (including 0 and -0.0), else 0. There is no step_backward."""
    _forward(ACT_STEP, y, x)


def softmax_forward(floating[:, ::1] y, const floating[:, ::1] x):
    """y = softmax(x) along each row, the row max subtracted first."""
    _forward(ACT_SOFTMAX, y, x)


def softmax_backward(floating[:, ::1] dx, const floating[:, ::1] dy,
                     const floating[:, ::1] x, const floating[:, ::1] y):
    """dx = y * (dy - Σ_j dy_j y_j) along each row."""
    _backward(ACT_SOFTMAX, dx, dy, x, y)
