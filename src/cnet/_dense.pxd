from cython cimport floating

cdef void dense_forward_ptr(floating* y, const floating* x, const floating* weight,
                            const floating* bias, int batch, int in_features,
                            int out_features, int ldy) noexcept nogil

cdef void dense_backward_params_ptr(floating* dweight, floating* dbias, const floating* dy,
                                    const floating* x, int batch, int cols,
                                    int out_features, int ldy, int ldx,
                                    floating beta) noexcept nogil

cdef void dense_backward_input_ptr(floating* dx, const floating* dy, const floating* weight,
                                   int batch, int cols, int out_features,
                                   int ldx) noexcept nogil

cdef void dense_backward_ptr(floating* dweight, floating* dbias, floating* dx,
                             const floating* dy, const floating* x, const floating* weight,
                             int batch, int in_features, int out_features,
                             floating beta) noexcept nogil
