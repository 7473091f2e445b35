# Row-major matrix products over scipy.linalg.cython_blas, for float32 and float64.
from cython cimport floating

cdef void gemm(floating* c, const floating* a, const floating* b,
               int m, int n, int k, bint trans_a, bint trans_b,
               floating alpha, floating beta) noexcept nogil

cdef void one_thread_begin() noexcept nogil
cdef void one_thread_end() noexcept nogil

cdef void gemm_ld(floating* c, int ldc, const floating* a, int lda, const floating* b,
                  int ldb, int m, int n, int k, bint trans_a, bint trans_b,
                  floating alpha, floating beta) noexcept nogil

cdef int blas_threads() noexcept nogil

cpdef long long get_threaded_min_work() noexcept nogil
