from cython cimport floating
from libc.stdint cimport int64_t

cdef void batchnorm_forward_ptr(floating* y, floating* xhat, floating* mean, floating* invstd,
                                floating* running_mean, floating* running_var,
                                int64_t* num_batches_tracked, const floating* x,
                                const floating* gamma, const floating* beta,
                                Py_ssize_t rows, Py_ssize_t cols, double eps, double momentum,
                                bint training) noexcept nogil

cdef void batchnorm_backward_ptr(floating* dx, floating* dgamma, floating* dbeta,
                                 floating* sums, const floating* dy, const floating* xhat,
                                 const floating* invstd, const floating* gamma,
                                 Py_ssize_t rows, Py_ssize_t cols, bint accumulate) noexcept nogil
