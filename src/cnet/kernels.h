/* The hottest elementwise loops, in C so that they vectorise.
 *
 * Each loop is written once as a macro over the element type T and instantiated for
 * float (_f32) and double (_f64). On x86-64 Linux with gcc 12 or later, target_clones
 * compiles each function for AVX-512, AVX2 (both with FMA) and baseline SSE2 and picks one
 * at load time, so a wheel built for baseline x86-64 still runs the wide vectors where the
 * CPU has them (older gcc: AVX2 without FMA, and baseline; see CNET_DISPATCH).
 * `restrict` tells the compiler the arrays do not overlap; sqrt vectorises because the
 * build uses -fno-math-errno (never -ffast-math: NaN checks must keep working).
 */
#ifndef CNET_KERNELS_H
#define CNET_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* MSVC's C compiler knows `restrict` only under /std:c11 or later (which defines
 * __STDC_VERSION__); in its default mode the qualifier is spelt `__restrict`. Defined after
 * the system headers (their __declspec(restrict) must stay as it is) and undefined at the end
 * of this file, so it reaches only the kernels below. */
#if defined(_MSC_VER) && !defined(__clang__) && !defined(__STDC_VERSION__) && !defined(restrict)
#define restrict __restrict
#define CNET_RESTRICT_DEFINED
#endif

/* CNET_NO_DISPATCH builds the kernels for the compiler's target alone (scripts/isa_check.sh
 * builds them so for each instruction set, to test every clone on one machine).
 * The clones are whole x86-64 levels (gcc 12 and later): v4 is AVX-512 and v3 AVX2, each
 * with FMA. target("avx512f") alone fuses multiply-adds in a loop's 512-bit body and its
 * scalar remainder but not in its 256-bit tail (that needs FMA or AVX512VL), so an entry's
 * Adam update depended on where a call's range began; target("avx2") had no FMA at all,
 * so its rounding did not depend on that. Older gcc knows no levels in target_clones and
 * gets AVX2 without FMA: every entry rounds the same way, without AVX-512's speed. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(CNET_NO_DISPATCH)
#if __GNUC__ >= 12
#define CNET_DISPATCH \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CNET_DISPATCH __attribute__((target_clones("avx2", "default")))
#endif
#else
#define CNET_DISPATCH
#endif
#if defined(__GNUC__)
#define CNET_KERNEL static __attribute__((unused)) CNET_DISPATCH  /* each module uses a few */
#else
#define CNET_KERNEL static
#endif

/* The block functions below and the helpers they call are inlined at every call site, so
 * that each copy is compiled for its caller's instruction set (a copy left out of line is
 * compiled for baseline x86-64, without fused multiply-adds, and rounds differently from the
 * inlined ones in the AVX-512 clone). */
#if defined(__GNUC__)
#define CNET_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define CNET_INLINE static __forceinline
#else
#define CNET_INLINE static inline
#endif

/* Unsigned integers that may alias floats: the finiteness check reads a float's bits. */
#if defined(__GNUC__)
typedef uint32_t __attribute__((may_alias)) cnet_bits32;
typedef uint64_t __attribute__((may_alias)) cnet_bits64;
#else
typedef uint32_t cnet_bits32;
typedef uint64_t cnet_bits64;
#endif

/* Flush-to-zero and denormals-are-zero for the calling thread, around a run of steps.
 * Arithmetic on denormal floats (|x| < 1.2e-38) takes a slow microcode path on x86: in
 * training they appear wherever a gradient stays zero (dead ReLU units) and Adam's first
 * moment decays by beta1 each step, and that alone made Adam 2.3x slower in the mnist step.
 * cnet_fp_flush_begin(on) sets the mode (when on) and returns the previous one, which
 * cnet_fp_flush_end restores. NaN and infinity are unaffected. */
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <xmmintrin.h>
#define CNET_HAS_FLUSH 1
static inline uint64_t cnet_fp_flush_begin(int on)
{
    unsigned int mode = _mm_getcsr();
    if (on) _mm_setcsr(mode | 0x8040u);     /* FTZ (bit 15) and DAZ (bit 6) */
    return mode;
}
static inline void cnet_fp_flush_end(uint64_t mode) { _mm_setcsr((unsigned int)mode); }
#elif defined(__aarch64__) && defined(__GNUC__)
#define CNET_HAS_FLUSH 1
static inline uint64_t cnet_fp_flush_begin(int on)
{
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    if (on) __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (1ull << 24)));   /* FZ */
    return fpcr;
}
static inline void cnet_fp_flush_end(uint64_t fpcr)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
}
#else
#define CNET_HAS_FLUSH 0
static inline uint64_t cnet_fp_flush_begin(int on) { (void)on; return 0; }
static inline void cnet_fp_flush_end(uint64_t mode) { (void)mode; }
#endif

/* Adam / AdamW over n parameters (PyTorch's order of operations, except that the second
 * moment's bias correction multiplies by inv_bc2_sqrt = 1 / sqrt(1 - beta2^t) where PyTorch
 * divides by its inverse: within 1 ulp of PyTorch's denominator, and one division fewer per
 * element (the loop is bound by its divisions and square root); and AdamW's decay, below,
 * which may differ from PyTorch's by 1 ulp.
 * step_size = lr / (1 - beta1^t), lr_wd = lr * weight_decay (AdamW). AdamW's decay is
 * p - lr_wd * p rather than p * (1 - lr_wd): with two products in the last line, gcc fused
 * one of them in the vector loop and the other in the scalar remainder, so an entry's update
 * depended on where the call's range began. */
#define CNET_ADAM(T, SUFFIX, SQRT)                                                         \
CNET_KERNEL void cnet_adam_##SUFFIX(                                              \
    T *restrict param, T *restrict exp_avg, T *restrict exp_avg_sq,                        \
    T *restrict max_exp_avg_sq, const T *restrict grad, ptrdiff_t n,                       \
    T step_size, T inv_bc2_sqrt, T one_minus_beta1, T beta2, T one_minus_beta2, T eps,     \
    T weight_decay, T lr_wd, int amsgrad, int decoupled)                                   \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T g = grad[i];                                                                     \
        T p = decoupled ? param[i] - lr_wd * param[i] : param[i];                          \
        if (!decoupled) g = g + weight_decay * p;                                          \
        T m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i]);                             \
        T v = exp_avg_sq[i] * beta2 + one_minus_beta2 * (g * g);                           \
        exp_avg[i] = m;                                                                    \
        exp_avg_sq[i] = v;                                                                 \
        if (amsgrad) {                                                                     \
            v = max_exp_avg_sq[i] > v ? max_exp_avg_sq[i] : v;                             \
            max_exp_avg_sq[i] = v;                                                         \
        }                                                                                  \
        param[i] = p - step_size * (m / (SQRT(v) * inv_bc2_sqrt + eps));                   \
    }                                                                                      \
}

/* SGD with momentum (buffer starts as the first gradient), dampening, Nesterov. */
#define CNET_SGD(T, SUFFIX)                                                                \
CNET_KERNEL void cnet_sgd_##SUFFIX(                                               \
    T *restrict param, T *restrict momentum_buffer, const T *restrict grad, ptrdiff_t n,   \
    T lr, T momentum, T keep, T weight_decay, int first_step, int nesterov)                \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T g = grad[i] + weight_decay * param[i];                                           \
        if (momentum != 0) {                                                               \
            T buf = first_step ? g : momentum * momentum_buffer[i] + keep * g;             \
            momentum_buffer[i] = buf;                                                      \
            g = nesterov ? g + momentum * buf : buf;                                       \
        }                                                                                  \
        param[i] = param[i] - lr * g;                                                      \
    }                                                                                      \
}

/* Adagrad over n parameters (PyTorch's order of operations); clr = lr / (1 + (t-1)*lr_decay). */
#define CNET_ADAGRAD(T, SUFFIX, SQRT)                                                      \
CNET_KERNEL void cnet_adagrad_##SUFFIX(                                                    \
    T *restrict param, T *restrict state_sum, const T *restrict grad, ptrdiff_t n,         \
    T clr, T weight_decay, T eps)                                                          \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T g = grad[i] + weight_decay * param[i];                                           \
        T s = state_sum[i] + g * g;                                                        \
        state_sum[i] = s;                                                                  \
        param[i] = param[i] + (-clr * g) / (SQRT(s) + eps);                                \
    }                                                                                      \
}

/* RMSprop over n parameters (PyTorch's order of operations), with optional momentum and
 * centering. grad_avg moves as torch's lerp: base + coeff * (g - grad_avg), where
 * (base, coeff) = (grad_avg, w) when w = 1 - alpha < 0.5, else (g, w - 1). */
#define CNET_RMSPROP(T, SUFFIX, SQRT)                                                      \
CNET_KERNEL void cnet_rmsprop_##SUFFIX(                                                    \
    T *restrict param, T *restrict square_avg, T *restrict momentum_buffer,                \
    T *restrict grad_avg, const T *restrict grad, ptrdiff_t n, T lr, T alpha,              \
    T one_minus_alpha, T lerp_coeff, int lerp_small, T eps, T weight_decay, T momentum,    \
    int use_momentum, int centered)                                                        \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T g = grad[i] + weight_decay * param[i];                                           \
        T sq = square_avg[i] * alpha + one_minus_alpha * g * g;                            \
        square_avg[i] = sq;                                                                \
        if (centered) {                                                                    \
            T ga = grad_avg[i];                                                            \
            ga = (lerp_small ? ga : g) + lerp_coeff * (g - ga);                            \
            grad_avg[i] = ga;                                                              \
            sq = sq - ga * ga;                                                             \
        }                                                                                  \
        T avg = SQRT(sq) + eps;                                                            \
        if (use_momentum) {                                                                \
            T buf = momentum_buffer[i] * momentum + g / avg;                               \
            momentum_buffer[i] = buf;                                                      \
            param[i] = param[i] - lr * buf;                                                \
        } else {                                                                           \
            param[i] = param[i] + (-lr * g) / avg;                                         \
        }                                                                                  \
    }                                                                                      \
}

/* Ask the memory system for bytes [begin, end) at p, to be read soon. */
static inline void cnet_prefetch_bytes(const void *p, ptrdiff_t begin, ptrdiff_t end)
{
#if defined(__GNUC__)
    for (ptrdiff_t b = begin; b < end; b += 64)
        __builtin_prefetch((const char *)p + b, 0, 2);
#else
    (void)p; (void)begin; (void)end;
#endif
}

/* The row of the data at position i of an epoch: order[i], or i when order is NULL (the
 * data's own order). */
static inline ptrdiff_t cnet_data_row(const int64_t *order, ptrdiff_t i)
{
    return order ? (ptrdiff_t)order[i] : i;
}

/* Rows order[start .. start+rows) of src (or start.. when order is NULL; bytes_per_row
 * each), to be read soon: the next batch's rows, scattered over the whole data set, while
 * the current step computes, and the gather's own rows a few ahead of its copy. */
static inline void cnet_prefetch_rows(const void *src, const int64_t *order, ptrdiff_t start,
                                      ptrdiff_t rows, ptrdiff_t bytes_per_row)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const char *row = (const char *)src + cnet_data_row(order, start + r) * bytes_per_row;
        cnet_prefetch_bytes(row, 0, bytes_per_row);
    }
}

/* Copy rows order[start .. start+rows) of src (or start.. when order is NULL) into dst
 * (or only check them, when dst is NULL), checking finiteness on the way: returns the first
 * row (in src) holding a NaN or an infinity, or -1. The check tests the exponent bits as
 * integers, so it vectorises (an OR-reduction) where a floating-point test would not.
 * Rows in a random order are requested CNET_GATHER_AHEAD rows before they are copied: the
 * hardware prefetchers follow one row but cannot guess the next, so without this each row
 * waits for its own first lines from memory (256 cold rows of 784 floats: 87-96 µs, with
 * it 54-58). */
#define CNET_GATHER_AHEAD 4
#define CNET_GATHER(T, SUFFIX, UINT, EXP_MASK)                                             \
CNET_KERNEL ptrdiff_t cnet_gather_rows_##SUFFIX(                                  \
    T *restrict dst, const T *restrict src, const int64_t *restrict order,                 \
    ptrdiff_t start, ptrdiff_t rows, ptrdiff_t width)                                      \
{                                                                                          \
    if (order)                                                                             \
        cnet_prefetch_rows(src, order, start, rows < CNET_GATHER_AHEAD ? rows              \
                           : CNET_GATHER_AHEAD, width * (ptrdiff_t)sizeof(T));             \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                 \
        ptrdiff_t row = cnet_data_row(order, start + r);                                   \
        if (order && r + CNET_GATHER_AHEAD < rows)                                         \
            cnet_prefetch_rows(src, order, start + r + CNET_GATHER_AHEAD, 1,               \
                               width * (ptrdiff_t)sizeof(T));                              \
        const UINT *bits = (const UINT *)(src + row * width);                              \
        UINT bad = 0;                                                                      \
        if (dst) {                                                                         \
            UINT *out = (UINT *)(dst + r * width);                                         \
            for (ptrdiff_t j = 0; j < width; j++) {                                        \
                UINT b = bits[j];                                                          \
                out[j] = b;                                                                \
                bad |= (UINT)((b & EXP_MASK) == EXP_MASK);                                 \
            }                                                                              \
        } else {                                                                           \
            for (ptrdiff_t j = 0; j < width; j++)                                          \
                bad |= (UINT)((bits[j] & EXP_MASK) == EXP_MASK);                           \
        }                                                                                  \
        if (bad) return row;                                                               \
    }                                                                                      \
    return -1;                                                                             \
}

/* Inverted dropout: mask[i] = scale (kept) or 0 (dropped), y = x * mask.
 * The random bits are a counter-based hash (splitmix64 of key + counter + i), so every
 * element is independent of the others and the loop vectorises; the caller advances the
 * counter by n after each call. An element is dropped when its 32 hash bits < threshold
 * (threshold = p * 2^32). */
static inline uint64_t cnet_splitmix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define CNET_DROPOUT(T, SUFFIX)                                                            \
CNET_KERNEL void cnet_dropout_##SUFFIX(                                                    \
    T *restrict y, T *restrict mask, const T *restrict x, ptrdiff_t n,                     \
    uint64_t key, uint64_t counter, uint32_t threshold, T scale)                           \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        uint32_t bits = (uint32_t)(cnet_splitmix64(key + counter + (uint64_t)i) >> 32);    \
        T m = bits >= threshold ? scale : (T)0;                                            \
        mask[i] = m;                                                                       \
        y[i] = x[i] * m;                                                                   \
    }                                                                                      \
}

/* Sums, dot products and maxima over CNET_LANES independent partial results. A plain loop
 * is one chain of dependent additions (4 cycles each); the compiler may split it only under
 * -ffast-math, which would also break NaN checks, so the split is written out here and the
 * lanes vectorise. These are called once per row, too often for target_clones' dispatch to
 * pay, so they are inline and use the baseline's 16-byte vectors. Sums accumulate in double
 * for both dtypes. The maximum skips NaN unless x[0] is NaN, as `if x[j] > top: top = x[j]`
 * from top = x[0] does; n >= 1. */
#define CNET_LANES 8
static inline double cnet_lanes_total(const double *acc)
{
    double total = 0;
    for (int k = 0; k < CNET_LANES; k++)
        total += acc[k];
    return total;
}
/* cnet_sum_lanes adds x into the partial sums acc[CNET_LANES]: a row summed a block at a
 * time, each block's length a multiple of CNET_LANES but the last, gets the same sum to the
 * last bit as the whole row at once. */
#define CNET_REDUCE(T, SUFFIX)                                                             \
static inline void cnet_sum_lanes_##SUFFIX(double *restrict acc, const T *restrict x,      \
                                           ptrdiff_t n)                                    \
{                                                                                          \
    ptrdiff_t i = 0;                                                                       \
    for (; i + CNET_LANES <= n; i += CNET_LANES)                                           \
        for (int k = 0; k < CNET_LANES; k++)                                               \
            acc[k] += (double)x[i + k];                                                    \
    for (; i < n; i++)                                                                     \
        acc[0] += (double)x[i];                                                            \
}                                                                                          \
static inline double cnet_sum_##SUFFIX(const T *restrict x, ptrdiff_t n)                   \
{                                                                                          \
    double acc[CNET_LANES] = {0};                                                          \
    cnet_sum_lanes_##SUFFIX(acc, x, n);                                                    \
    return cnet_lanes_total(acc);                                                          \
}                                                                                          \
static inline double cnet_dot_##SUFFIX(const T *restrict x, const T *restrict y,           \
                                       ptrdiff_t n)                                        \
{                                                                                          \
    double acc[CNET_LANES] = {0};                                                          \
    ptrdiff_t i = 0;                                                                       \
    for (; i + CNET_LANES <= n; i += CNET_LANES)                                           \
        for (int k = 0; k < CNET_LANES; k++)                                               \
            acc[k] += (double)x[i + k] * (double)y[i + k];                                 \
    for (; i < n; i++)                                                                     \
        acc[0] += (double)x[i] * (double)y[i];                                             \
    return cnet_lanes_total(acc);                                                          \
}                                                                                          \
static inline T cnet_max_##SUFFIX(const T *restrict x, ptrdiff_t n)                        \
{                                                                                          \
    T lane[CNET_LANES], top;                                                               \
    ptrdiff_t i = 0;                                                                       \
    for (int k = 0; k < CNET_LANES; k++)                                                   \
        lane[k] = x[0];                                                                    \
    CNET_MAX_BLOCKS_##SUFFIX(lane, x, n, i)                                                \
    for (; i + CNET_LANES <= n; i += CNET_LANES)                                           \
        for (int k = 0; k < CNET_LANES; k++)                                               \
            lane[k] = x[i + k] > lane[k] ? x[i + k] : lane[k];                             \
    for (; i < n; i++)                                                                     \
        lane[0] = x[i] > lane[0] ? x[i] : lane[0];                                         \
    top = lane[0];                                                                         \
    for (int k = 1; k < CNET_LANES; k++)                                                   \
        top = lane[k] > top ? lane[k] : top;                                               \
    return top;                                                                            \
}

/* The maximum's whole blocks in SSE2 registers (gcc keeps `a > b ? a : b` on floats scalar):
 * maxps/maxpd(a, b) is exactly a > b ? a : b in each lane, NaN and signed zeros included,
 * so the lanes hold what the scalar loop after it would have left (it then has no blocks). */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define CNET_MAX_BLOCKS(VEC, WIDTH, SET1, LOADU, MAX, STOREU, lane, x, n, i)                 \
    {                                                                                      \
        VEC acc[CNET_LANES / WIDTH];                                                       \
        for (int v = 0; v < CNET_LANES / WIDTH; v++)                                       \
            acc[v] = SET1(x[0]);                                                           \
        for (; i + CNET_LANES <= n; i += CNET_LANES)                                       \
            for (int v = 0; v < CNET_LANES / WIDTH; v++)                                   \
                acc[v] = MAX(LOADU(x + i + v * WIDTH), acc[v]);                            \
        for (int v = 0; v < CNET_LANES / WIDTH; v++)                                       \
            STOREU(lane + v * WIDTH, acc[v]);                                              \
    }
#define CNET_MAX_BLOCKS_f32(lane, x, n, i) \
    CNET_MAX_BLOCKS(__m128, 4, _mm_set1_ps, _mm_loadu_ps, _mm_max_ps, _mm_storeu_ps, lane, x, n, i)
#define CNET_MAX_BLOCKS_f64(lane, x, n, i) \
    CNET_MAX_BLOCKS(__m128d, 2, _mm_set1_pd, _mm_loadu_pd, _mm_max_pd, _mm_storeu_pd, lane, x, n, i)
#else
#define CNET_MAX_BLOCKS_f32(lane, x, n, i)
#define CNET_MAX_BLOCKS_f64(lane, x, n, i)
#endif

/* The exponentials and logarithms below vectorise (libm's do not): the float32 ones on every
 * x86-64 target, the float64 exponential in the AVX2 and AVX-512 clones. Every choice is a
 * bit mask, not `c ? a : b`, because gcc keeps a select whose arms hold floating-point
 * operations a branch (it must not raise an exception the source would not), and a loop with
 * a branch vectorises only where AVX-512's masked instructions run it. */
CNET_INLINE float cnet_f32_from_bits(cnet_bits32 b) { float f; memcpy(&f, &b, sizeof f); return f; }
CNET_INLINE cnet_bits32 cnet_bits_of_f32(float f) { cnet_bits32 b; memcpy(&b, &f, sizeof b); return b; }
CNET_INLINE float cnet_select_f32(cnet_bits32 mask, float a, float b)   /* mask ? a : b */
{
    return cnet_f32_from_bits((cnet_bits_of_f32(a) & mask) | (cnet_bits_of_f32(b) & ~mask));
}
#define CNET_MASK(condition) (0u - (cnet_bits32)(condition))   /* all ones or all zeros */
CNET_INLINE double cnet_f64_from_bits(cnet_bits64 b) { double f; memcpy(&f, &b, sizeof f); return f; }
CNET_INLINE cnet_bits64 cnet_bits_of_f64(double f) { cnet_bits64 b; memcpy(&b, &f, sizeof b); return b; }
CNET_INLINE double cnet_select_f64(cnet_bits64 mask, double a, double b)  /* mask ? a : b */
{
    return cnet_f64_from_bits((cnet_bits_of_f64(a) & mask) | (cnet_bits_of_f64(b) & ~mask));
}
/* condition ? a : b by a mask, for the type-generic functions below (T float: f32, double:
 * f64). The float64 mask is the negated signed condition: gcc's baseline x86-64 code does not
 * vectorise a comparison widened to an unsigned 64-bit 0 or 1. */
CNET_INLINE float cnet_choose_f32(int condition, float a, float b)
{
    return cnet_select_f32(CNET_MASK(condition), a, b);
}
CNET_INLINE double cnet_choose_f64(int condition, double a, double b)
{
    return cnet_select_f64((cnet_bits64)-(int64_t)condition, a, b);
}
CNET_INLINE float cnet_fabs_f32(float x) { return fabsf(x); }
CNET_INLINE double cnet_fabs_f64(double x) { return fabs(x); }
CNET_INLINE float cnet_copysign_f32(float x, float sign) { return copysignf(x, sign); }
CNET_INLINE double cnet_copysign_f64(double x, double sign) { return copysign(x, sign); }

/* For x in [-88, 0] or NaN: x = n ln2 + r with |r| <= ln2/2; returns 2^n and sets *em1_r to
 * e^r - 1 by Cephes' degree-6 polynomial (within about 1 ulp of e^r once 1 is added, and of
 * relative accuracy however small r is). Adding 1.5 * 2^23 rounds x log2(e) to the nearest
 * integer n (the spacing of floats there is 1) and leaves n in the low bits of the sum's
 * mantissa, from where a shift moves it into the exponent: no conversion to an integer, so
 * NaN needs no special case (it stays NaN through the arithmetic), and n = -127 gives 0. */
CNET_INLINE float cnet_exp_reduce_f32(float x, float *em1_r)
{
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;             /* ln2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    *em1_r = p * r * r + r;
    return cnet_f32_from_bits((cnet_bits_of_f32(t) << 23) + 0x3f800000u);
}

/* The float64 twin: 1.5 * 2^52 rounds, ln2 in fdlibm's two parts, and e^r - 1 by its Taylor
 * series to r^13 (the first term left out is below 2^-57 of e^r). For x in [-709, 0] or NaN;
 * n = -1023 gives 0. */
CNET_INLINE double cnet_exp_reduce_f64(double x, double *em1_r)
{
    double t = x * 1.4426950408889634 + 6755399441055744.0;
    double n = t - 6755399441055744.0;
    double r = x - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;                                         /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    *em1_r = p * r * r + r;
    return cnet_f64_from_bits((cnet_bits_of_f64(t) << 52) + 0x3ff0000000000000ull);
}

/* e^x for x <= 0 (or NaN, which stays NaN). x below LOWEST, where e^x leaves the normal
 * range, counts as CLAMP, whose 2^n is 0. x > 0 gives a value of no use but no undefined
 * behaviour: only a padded lane past the end of the data holds one, and it is discarded.
 * (Without a select for it gcc's SSE2 code vectorises the float64 shifted exponential.) */
#define CNET_EXP_NONPOSITIVE(T, SUFFIX, LOWEST, CLAMP)                                     \
CNET_INLINE T cnet_exp_nonpositive_##SUFFIX(T x)                                          \
{                                                                                          \
    T xc = cnet_choose_##SUFFIX(x < LOWEST, CLAMP, x);                                     \
    T em1_r, scale = cnet_exp_reduce_##SUFFIX(xc, &em1_r);                                 \
    return (em1_r + 1) * scale;                                                            \
}
CNET_EXP_NONPOSITIVE(float, f32, -87.33654f, -88.0f)
CNET_EXP_NONPOSITIVE(double, f64, -708.39641853226408, -709.0)

/* 2 atanh(s) = 2 (s + s^3/3 + ... + s^13/13) for |s| <= 1/3: each term is under a ninth of
 * the one before, so the first left out is below 2^-26 of the sum and seven reach float32's
 * precision, with the relative accuracy of s (no cancellation). The logarithms below are made
 * of it: log(1 + y) = 2 atanh(y / (2 + y)). */
CNET_INLINE float cnet_two_atanh_f32(float s)
{
    float s2 = s * s, p = 1.0f / 13;
    p = p * s2 + 1.0f / 11;
    p = p * s2 + 1.0f / 9;
    p = p * s2 + 1.0f / 7;
    p = p * s2 + 1.0f / 5;
    p = p * s2 + 1.0f / 3;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

/* log(x): x = 2^k m with m in [sqrt(1/2), sqrt(2)) (a subnormal x scaled by 2^24 first),
 * log m = 2 atanh((m - 1)/(m + 1)), k ln2 in two parts. 0 gives -inf, infinity itself, NaN
 * and negative x NaN. */
CNET_INLINE float cnet_log_f32(float x)
{
    cnet_bits32 xb = cnet_bits_of_f32(x);
    cnet_bits32 subnormal = CNET_MASK((xb & 0x7f800000u) == 0);               /* or zero */
    float y = x * cnet_f32_from_bits(0x3f800000u + (subnormal & (24u << 23)));  /* 2^24 or 1 */
    cnet_bits32 bits = cnet_bits_of_f32(y);
    int32_t k = (int32_t)((bits >> 23) & 0xffu) - 127 - (int32_t)(24u & subnormal);
    float m = cnet_f32_from_bits((bits & 0x007fffffu) | 0x3f800000u);         /* in [1, 2) */
    cnet_bits32 halve = CNET_MASK(m > 1.41421356f);
    m *= cnet_f32_from_bits(0x3f800000u - (halve & (1u << 23)));              /* 1/2 or 1 */
    k -= (int32_t)halve;
    float r = (float)k * 0.693359375f
              + ((float)k * -2.12194440e-4f + cnet_two_atanh_f32((m - 1.0f) / (m + 1.0f)));
    cnet_bits32 finite = CNET_MASK(xb - 1u < 0x7f7fffffu);           /* 0 < x < infinity */
    cnet_bits32 zero = CNET_MASK((xb << 1) == 0), inf = CNET_MASK(xb == 0x7f800000u);
    cnet_bits32 special = (zero & 0xff800000u) | (inf & 0x7f800000u) | (~zero & ~inf & 0x7fc00000u);
    return cnet_f32_from_bits((cnet_bits_of_f32(r) & finite) | (special & ~finite));
}

/* The kernels run CNET_BLOCK elements at a time through one block function, which reads
 * them where they are and writes its results straight to the outputs, or, when an output is
 * the input itself (allowed; any other overlap is not, nor between a kernel's two outputs),
 * to a local array copied out afterwards, so that the function's restrict pointers never
 * alias and gcc needs no run-time overlap check. The last, partial block goes through the
 * same function on a zero-padded copy. The function is inlined at all three places
 * (CNET_INLINE), so every element is computed by the same instructions wherever it falls:
 * a vector loop's scalar remainder would round differently where gcc fuses multiply-adds,
 * and cross-entropy's loss must be the same to the last bit with or without its gradient.
 * Reading the inputs in place matters for speed: gcc copies 64 bytes with 16-byte moves in
 * its AVX2 code, and a 32-byte load of data just stored in 16-byte pieces waits for the
 * stores to reach the cache, which had made the AVX2 loops no faster than the SSE2 ones (a
 * narrower load of part of a wider store, as in the copy out, is forwarded). */
#define CNET_BLOCK 16
#define CNET_COMMA ,        /* a parameter or an argument more, passed through the macro */
#define CNET_BLOCKWISE(NAME, BLOCK, T, OUTPUTS, PARAMS, ARGS)                              \
CNET_KERNEL void NAME(CNET_OUTPUTS_##OUTPUTS(T), const T *x, ptrdiff_t n PARAMS)           \
{                                                                                          \
    T out[OUTPUTS][CNET_BLOCK];                                                            \
    ptrdiff_t i = 0;                                                                       \
    if (CNET_DISJOINT_##OUTPUTS)      /* then the outputs do not overlap x at all */        \
        for (; i + CNET_BLOCK <= n; i += CNET_BLOCK)                                       \
            BLOCK(CNET_AT_##OUTPUTS(i), x + i ARGS);                                       \
    for (; i + CNET_BLOCK <= n; i += CNET_BLOCK) {                                         \
        BLOCK(CNET_OUT_##OUTPUTS, x + i ARGS);                                             \
        CNET_STORE_##OUTPUTS(i, sizeof out[0]);                                            \
    }                                                                                      \
    if (i < n) {                                                                           \
        T v[CNET_BLOCK];                                                                   \
        memset(v, 0, sizeof v);                                                            \
        memcpy(v, x + i, (size_t)(n - i) * sizeof(T));                                     \
        BLOCK(CNET_OUT_##OUTPUTS, v ARGS);                                                 \
        CNET_STORE_##OUTPUTS(i, (size_t)(n - i) * sizeof(T));                              \
    }                                                                                      \
}
#define CNET_OUTPUTS_1(T) T *y
#define CNET_OUTPUTS_2(T) T *y, T *y2
#define CNET_DISJOINT_1 (y != x)
#define CNET_DISJOINT_2 (y != x && y2 != x)
#define CNET_AT_1(i) y + (i)
#define CNET_AT_2(i) y + (i), y2 + (i)
#define CNET_OUT_1 out[0]
#define CNET_OUT_2 out[0], out[1]
#define CNET_STORE_1(i, bytes) memcpy(y + (i), out[0], bytes)
#define CNET_STORE_2(i, bytes) do {                                                       \
        memcpy(y + (i), out[0], bytes);                                                    \
        memcpy(y2 + (i), out[1], bytes);                                                   \
    } while (0)

/* The exponential's blocks, for float32 and float64 (T, SUFFIX), each element by itself:
 * - exp_shifted: y = e^(x - shift) for shift >= max(x), a softmax row before normalising
 *   (shift 0: e^x);
 * - sigmoid: y = 1 / (1 + e^-x) in the two-branch form that never overflows;
 * - tanh: y = -m / (2 + m) with m = e^-2|x| - 1, the sign put back with copysign. m is
 *   2^n (e^r - 1) + (2^n - 1): relative accuracy for small |x| (n = 0, m = e^r - 1), no
 *   cancellation beyond; within 2 ulp of tanh for every float32. |x| is clamped to TANH_ONE,
 *   from where the formula gives 1 (tanh itself rounds to 1 from 9.0109 in float32, 19.06 in
 *   float64: 1 ulp off in between); NaN stays NaN. */
#define CNET_EXP_BLOCKS(T, SUFFIX, TANH_ONE)                                               \
CNET_INLINE void cnet_exp_shifted_block_##SUFFIX(T *restrict y, const T *restrict v,       \
                                                 T shift)                                  \
{                                                                                          \
    for (int k = 0; k < CNET_BLOCK; k++)                                                   \
        y[k] = cnet_exp_nonpositive_##SUFFIX(v[k] - shift);                                \
}                                                                                          \
CNET_INLINE void cnet_sigmoid_block_##SUFFIX(T *restrict y, const T *restrict v)           \
{                                                                                          \
    for (int k = 0; k < CNET_BLOCK; k++) {                                                 \
        T z = cnet_exp_nonpositive_##SUFFIX(-cnet_fabs_##SUFFIX(v[k]));                    \
        y[k] = cnet_choose_##SUFFIX(v[k] >= 0, 1, z) / (1 + z);                            \
    }                                                                                      \
}                                                                                          \
CNET_INLINE void cnet_tanh_block_##SUFFIX(T *restrict y, const T *restrict v)              \
{                                                                                          \
    for (int k = 0; k < CNET_BLOCK; k++) {                                                 \
        T a = cnet_fabs_##SUFFIX(v[k]);                                                    \
        T em1_r, scale = cnet_exp_reduce_##SUFFIX(                                         \
            -2 * cnet_choose_##SUFFIX(a > TANH_ONE, TANH_ONE, a), &em1_r);                 \
        T m = scale * em1_r + (scale - 1);                                                 \
        y[k] = cnet_copysign_##SUFFIX(-m / (2 + m), v[k]);                                 \
    }                                                                                      \
}
CNET_EXP_BLOCKS(float, f32, 9.0f)
CNET_EXP_BLOCKS(double, f64, 20.0)

/* BCE's logarithms: lx = log(x) and l1x = log1p(-x). For |x| < 1/2, log1p(-x) is
 * 2 atanh(-x / (2 - x)), which keeps its relative accuracy for small x; elsewhere log(1 - x),
 * where 1 - x is exact (x >= 1/2) or log(1 - x) is at least log(3/2). */
CNET_INLINE void cnet_bce_logs_block(float *restrict lx, float *restrict l1x,
                                       const float *restrict v)
{
    for (int k = 0; k < CNET_BLOCK; k++) {
        lx[k] = cnet_log_f32(v[k]);
        l1x[k] = cnet_choose_f32(fabsf(v[k]) < 0.5f,
                                 cnet_two_atanh_f32(-v[k] / (2.0f - v[k])),
                                 cnet_log_f32(1.0f - v[k]));
    }
}

/* BCE with logits' terms: q = σ(-x) = 1 / (1 + e^x) and l = log1p(e^-|x|), so that
 * log σ(x) = min(x, 0) - l. With z = e^-|x| <= 1 (no overflow), q = z / (1 + z) for x >= 0
 * and 1 / (1 + z) below, and l = 2 atanh(z / (2 + z)), accurate however small z is (log(1 + z)
 * would round 1 + z first). Infinite x gives l = 0 and q = 0 or 1; NaN stays NaN. */
CNET_INLINE void cnet_softplus_terms_block(float *restrict q, float *restrict l,
                                             const float *restrict v)
{
    for (int k = 0; k < CNET_BLOCK; k++) {
        float z = cnet_exp_nonpositive_f32(-fabsf(v[k]));
        q[k] = cnet_choose_f32(v[k] >= 0.0f, z, 1.0f) / (1.0f + z);
        l[k] = cnet_two_atanh_f32(z / (2.0f + z));
    }
}

CNET_BLOCKWISE(cnet_exp_shifted_f32, cnet_exp_shifted_block_f32, float, 1,
               CNET_COMMA float shift, CNET_COMMA shift)
CNET_BLOCKWISE(cnet_exp_shifted_f64, cnet_exp_shifted_block_f64, double, 1,
               CNET_COMMA double shift, CNET_COMMA shift)
CNET_BLOCKWISE(cnet_sigmoid_f32, cnet_sigmoid_block_f32, float, 1, , )
CNET_BLOCKWISE(cnet_sigmoid_f64, cnet_sigmoid_block_f64, double, 1, , )
CNET_BLOCKWISE(cnet_tanh_f32, cnet_tanh_block_f32, float, 1, , )
CNET_BLOCKWISE(cnet_tanh_f64, cnet_tanh_block_f64, double, 1, , )
CNET_BLOCKWISE(cnet_bce_logs_f32, cnet_bce_logs_block, float, 2, , )
CNET_BLOCKWISE(cnet_softplus_terms_f32, cnet_softplus_terms_block, float, 2, , )

CNET_ADAM(float, f32, sqrtf)
CNET_ADAM(double, f64, sqrt)
CNET_SGD(float, f32)
CNET_SGD(double, f64)
CNET_DROPOUT(float, f32)
CNET_DROPOUT(double, f64)
CNET_ADAGRAD(float, f32, sqrtf)
CNET_ADAGRAD(double, f64, sqrt)
CNET_RMSPROP(float, f32, sqrtf)
CNET_RMSPROP(double, f64, sqrt)
CNET_GATHER(float, f32, cnet_bits32, 0x7f800000u)
CNET_GATHER(double, f64, cnet_bits64, 0x7ff0000000000000ull)
CNET_REDUCE(float, f32)
CNET_REDUCE(double, f64)

#ifdef CNET_RESTRICT_DEFINED
#undef restrict
#undef CNET_RESTRICT_DEFINED
#endif

#endif
