"""Row-major GEMM over scipy's BLAS.

BLAS is column-major. A row-major (m, n) matrix is the same memory as a column-major
(n, m) one, so C = op(A) op(B) in row-major is Cᵀ = op(B)ᵀ op(A)ᵀ in column-major:
call ?gemm with the operands swapped and each leading dimension set to the stored
row length.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

from cnet._memview cimport ptr2, cptr2


cdef void gemm(floating* c,              # (m, n) out
               const floating* a,        # (m, k), or (k, m) if trans_a
               const floating* b,        # (k, n), or (n, k) if trans_b
               int m, int n, int k, bint trans_a, bint trans_b,
               floating alpha, floating beta) noexcept nogil:
    """c = alpha * op(a) @ op(b) + beta * c, all arrays contiguous and row-major."""
    if m == 0 or n == 0:
        return
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    # BLAS rejects a leading dimension of 0 even when that side is empty.
    cdef int lda = max(1, m if trans_a else k)
    cdef int ldb = max(1, k if trans_b else n)
    cdef int ldc = n
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


def matmul(floating[:, ::1] out, const floating[:, ::1] a, const floating[:, ::1] b,
           bint trans_a=False, bint trans_b=False,
           double alpha=1.0, double beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out (shapes checked by the caller)."""
    cdef int m = out.shape[0], n = out.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    with nogil:
        gemm(ptr2(out), cptr2(a), cptr2(b), m, n, k, trans_a, trans_b, <floating>alpha, <floating>beta)
