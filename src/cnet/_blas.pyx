"""Row-major GEMM over scipy's BLAS.

BLAS is column-major. A row-major (m, n) matrix is the same memory as a column-major
(n, m) one, so C = op(A) op(B) in row-major is Cᵀ = op(B)ᵀ op(A)ᵀ in column-major:
call ?gemm with the operands swapped and each leading dimension set to the stored
row length.

Threads: products of fewer than `threaded_min_work` multiply-adds (default 2^20, about
12 µs on one core) run on one thread, through openblas_set_num_threads_local (OpenBLAS >=
0.3.27; other BLAS libraries decide for themselves), which in scipy's pthreads build sets
the count for the whole process: see one_thread_begin. Larger products of the step runner
are shared by its own team of threads (cnet._engine), each thread's part on one BLAS thread;
the BLAS threads only the large products outside a team. Measured on a 2-core machine, each
product alone: a (64, 784) x (784, 128) product takes 152 µs on one thread and 90 µs on
two, but a (64, 128) x (128, 64) one 14 and 10.5 µs, and the smaller ones of an mnist step
gain nothing, while each threaded product costs its worker thread time slices and a
wake-up. `set_threaded_min_work(0)` leaves every decision to the BLAS (and the team); a
larger value keeps more of the work on one thread.
"""
import numbers

import numpy as np

from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_release_lock, PyThread_type_lock, WAIT_LOCK)
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

from cnet._memview cimport ptr2, cptr2

ctypedef int (*set_threads_t)(int) noexcept nogil
ctypedef int (*get_threads_t)() noexcept nogil
cdef set_threads_t set_local_threads = NULL
cdef get_threads_t get_threads = NULL
cdef long long threaded_min_work = 1 << 20
# OpenBLAS keeps products of up to 65536 * 4 multiply-adds on one thread by itself
# (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD): no need to ask, or take the lock.
cdef long long OPENBLAS_ONE_THREAD_MAX = 262144


def _bind_thread_control():
    """Find OpenBLAS's openblas_set_num_threads_local and openblas_get_num_threads in the
    BLAS scipy links to."""
    global set_local_threads, get_threads
    import ctypes
    import scipy.linalg.cython_blas
    try:
        library = ctypes.CDLL(scipy.linalg.cython_blas.__file__)
    except OSError:
        return False

    def find(*names):
        for name in names:
            function = getattr(library, name, None)
            if function is not None:
                return ctypes.cast(function, ctypes.c_void_p).value
        return 0

    get_threads = <get_threads_t><size_t>find("openblas_get_num_threads",
                                      "scipy_openblas_get_num_threads")
    set_local_threads = <set_threads_t><size_t>find("openblas_set_num_threads_local",
                                            "scipy_openblas_set_num_threads_local")
    if get_threads == NULL:
        set_local_threads = NULL
    return set_local_threads != NULL


cdef int blas_threads() noexcept nogil:
    """The threads the BLAS may use by its own setting (1 where cnet cannot control them):
    the step runner's team is at most this large. While one-thread requests are open (this
    or another trainer's call), the count they found, not their temporary 1: otherwise a
    team's size, and its results' last bits, would depend on another thread's timing."""
    cdef int n
    if set_local_threads == NULL:
        return 1
    PyThread_acquire_lock(one_thread_lock, WAIT_LOCK)
    n = threads_before if one_thread_requests > 0 else get_threads()
    PyThread_release_lock(one_thread_lock)
    return n


def set_threaded_min_work(work):
    """Products with m*n*k below `work` multiply-adds run on the calling thread alone (0: the
    BLAS decides every time), and the step runner's team (cnet.set_num_threads) shares only
    Dense layers whose product has at least `work`. Returns the previous value. Where the
    BLAS is not OpenBLAS >= 0.3.27 (`cnet._blas.THREAD_CONTROL` is then False), the BLAS
    part has no effect."""
    global threaded_min_work
    if isinstance(work, bool) or not isinstance(work, numbers.Integral):
        raise TypeError(f"work: expected an int >= 0, got {work!r}")
    if not 0 <= work < 2**63:
        raise ValueError(f"work: expected an int in [0, 2**63), got {work}")
    previous, threaded_min_work = threaded_min_work, work
    return previous


cpdef long long get_threaded_min_work() noexcept nogil:
    """The current set_threaded_min_work value."""
    return threaded_min_work


def threaded_products(work):
    """Whether a product of `work` multiply-adds may use more than one BLAS thread."""
    return THREAD_CONTROL and work > OPENBLAS_ONE_THREAD_MAX and work >= threaded_min_work


def set_thread_autotune(mode):
    """Whether Trainer.fit times the first batches of each epoch with the large products
    threaded (by the step runner's team, or the BLAS) and on one thread, and trains the rest
    of the epoch the faster way. For a machine whose cores are shared with other work. Off
    by default, because the two ways may round differently in the last bits, so runs that
    chose differently end with slightly different weights (run to run, and a resumed run
    against an uninterrupted one). Returns the previous mode."""
    global thread_autotune
    if not isinstance(mode, (bool, np.bool_)):
        raise TypeError(f"mode: expected True or False, got {mode!r}")
    previous, thread_autotune = thread_autotune, bool(mode)
    return previous


def get_thread_autotune():
    return thread_autotune


thread_autotune = False
THREAD_CONTROL = _bind_thread_control()


# scipy's OpenBLAS is built with pthreads, where openblas_set_num_threads_local sets the
# count for the whole process, not the calling thread (checked: a second thread sees it).
# So "one thread" is a process-wide request, counted under a lock: the first request sets
# the count to 1, the last to end restores it, and concurrent trainers cannot leave it at 1
# for good. While any request is open, other threads' products run on one thread as well
# (slower, never wrong).
cdef PyThread_type_lock one_thread_lock = PyThread_allocate_lock()
cdef long one_thread_requests = 0   # written under the lock, read without it by gemm_ld
cdef int threads_before = 0

# The lockless read must still be an atomic one (a plain read racing a write is undefined
# behaviour in C, and ThreadSanitizer reports it): team.h's atomics, as the team's own counters.
cdef extern from "team.h" nogil:
    long cnet_atomic_load(const long* value)
    void cnet_atomic_store(long* value, long v)


cdef void one_thread_begin() noexcept nogil:
    """BLAS products run on one thread until the matching one_thread_end."""
    global one_thread_requests, threads_before
    if set_local_threads == NULL:
        return
    PyThread_acquire_lock(one_thread_lock, WAIT_LOCK)
    if one_thread_requests == 0:
        threads_before = set_local_threads(1)
    cnet_atomic_store(&one_thread_requests, one_thread_requests + 1)
    PyThread_release_lock(one_thread_lock)


cdef void one_thread_end() noexcept nogil:
    global one_thread_requests
    if set_local_threads == NULL:
        return
    PyThread_acquire_lock(one_thread_lock, WAIT_LOCK)
    cnet_atomic_store(&one_thread_requests, one_thread_requests - 1)
    if one_thread_requests == 0:
        set_local_threads(threads_before)
    PyThread_release_lock(one_thread_lock)


cdef void gemm(floating* c,              # (m, n) out
               const floating* a,        # (m, k), or (k, m) if trans_a
               const floating* b,        # (k, n), or (n, k) if trans_b
               int m, int n, int k, bint trans_a, bint trans_b,
               floating alpha, floating beta) noexcept nogil:
    """c = alpha * op(a) @ op(b) + beta * c, all arrays contiguous and row-major."""
    gemm_ld(c, n, a, m if trans_a else k, b, k if trans_b else n, m, n, k, trans_a, trans_b,
            alpha, beta)


cdef void gemm_ld(floating* c, int ldc, const floating* a, int lda, const floating* b,
                  int ldb, int m, int n, int k, bint trans_a, bint trans_b,
                  floating alpha, floating beta) noexcept nogil:
    """As gemm, on row-major blocks of larger matrices: each operand's rows are ld? elements
    apart (a block of columns of a wider matrix starts at its first column)."""
    if m == 0 or n == 0:
        return
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    # BLAS rejects a leading dimension of 0 even when that side is empty.
    lda = max(1, lda)
    ldb = max(1, ldb)
    ldc = max(1, ldc)
    cdef long long work = <long long>m * n * k
    # An open request (a team's, or another trainer's) already holds the count at 1; the
    # unlocked read may be stale, which can only leave one product threaded, never wrong.
    cdef bint alone = (set_local_threads != NULL and work > OPENBLAS_ONE_THREAD_MAX
                       and work < threaded_min_work
                       and cnet_atomic_load(&one_thread_requests) == 0)
    if alone:
        one_thread_begin()
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)
    if alone:
        one_thread_end()


def matmul(floating[:, ::1] out, const floating[:, ::1] a, const floating[:, ::1] b,
           bint trans_a=False, bint trans_b=False,
           double alpha=1.0, double beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out (shapes checked by the caller)."""
    cdef int m = out.shape[0], n = out.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    with nogil:
        gemm(ptr2(out), cptr2(a), cptr2(b), m, n, k, trans_a, trans_b, <floating>alpha, <floating>beta)
