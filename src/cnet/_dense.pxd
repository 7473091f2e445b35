from cython cimport floating

cdef void dense_forward_ptr(floating* y, const floating* x, const floating* weight,
                            const floating* bias, int batch, int in_features,
                            int out_features) noexcept nogil

cdef void dense_backward_ptr(floating* dweight, floating* dbias, floating* dx,
                             const floating* dy, const floating* x, const floating* weight,
                             int batch, int in_features, int out_features,
                             floating beta) noexcept nogil
