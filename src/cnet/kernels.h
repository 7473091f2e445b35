/* The hottest elementwise loops, in C so that they vectorise.
 *
 * Each loop is written once as a macro over the element type T and instantiated for
 * float (_f32) and double (_f64). On x86-64 Linux with gcc, target_clones compiles each
 * function for AVX-512, AVX2 and baseline SSE2 and picks one at load time, so a wheel
 * built for baseline x86-64 still runs the wide vectors where the CPU has them.
 * `restrict` tells the compiler the arrays do not overlap; sqrt vectorises because the
 * build uses -fno-math-errno (never -ffast-math: NaN checks must keep working).
 */
#ifndef CNET_KERNELS_H
#define CNET_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CNET_DISPATCH __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNET_DISPATCH
#endif
#if defined(__GNUC__)
#define CNET_KERNEL static __attribute__((unused)) CNET_DISPATCH  /* each module uses a few */
#else
#define CNET_KERNEL static
#endif

/* Unsigned integers that may alias floats: the finiteness check reads a float's bits. */
#if defined(__GNUC__)
typedef uint32_t __attribute__((may_alias)) cnet_bits32;
typedef uint64_t __attribute__((may_alias)) cnet_bits64;
#else
typedef uint32_t cnet_bits32;
typedef uint64_t cnet_bits64;
#endif

/* Adam / AdamW over n parameters (PyTorch's order of operations).
 * step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), decay = 1 - lr*wd (AdamW). */
#define CNET_ADAM(T, SUFFIX, SQRT)                                                         \
CNET_KERNEL void cnet_adam_##SUFFIX(                                              \
    T *restrict param, T *restrict exp_avg, T *restrict exp_avg_sq,                        \
    T *restrict max_exp_avg_sq, const T *restrict grad, ptrdiff_t n,                       \
    T step_size, T bc2_sqrt, T one_minus_beta1, T beta2, T one_minus_beta2, T eps,         \
    T weight_decay, T decay, int amsgrad, int decoupled)                                   \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T g = grad[i];                                                                     \
        T p = decoupled ? param[i] * decay : param[i];                                     \
        if (!decoupled) g = g + weight_decay * p;                                          \
        T m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i]);                             \
        T v = exp_avg_sq[i] * beta2 + one_minus_beta2 * (g * g);                           \
        exp_avg[i] = m;                                                                    \
        exp_avg_sq[i] = v;                                                                 \
        if (amsgrad) {                                                                     \
            v = max_exp_avg_sq[i] > v ? max_exp_avg_sq[i] : v;                             \
            max_exp_avg_sq[i] = v;                                                         \
        }                                                                                  \
        param[i] = p - step_size * (m / (SQRT(v) / bc2_sqrt + eps));                       \
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

/* Copy rows order[start .. start+rows) of src (or start.. when order is NULL) into dst,
 * checking finiteness on the way: returns the first row (in src) holding a NaN or an
 * infinity, or -1. The check tests the exponent bits as integers, so it vectorises
 * (an OR-reduction) where a floating-point test would not. */
#define CNET_GATHER(T, SUFFIX, UINT, EXP_MASK)                                             \
CNET_KERNEL ptrdiff_t cnet_gather_rows_##SUFFIX(                                  \
    T *restrict dst, const T *restrict src, const int64_t *restrict order,                 \
    ptrdiff_t start, ptrdiff_t rows, ptrdiff_t width)                                      \
{                                                                                          \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                 \
        ptrdiff_t row = order ? (ptrdiff_t)order[start + r] : start + r;                   \
        const UINT *bits = (const UINT *)(src + row * width);                              \
        UINT *out = (UINT *)(dst + r * width);                                             \
        UINT bad = 0;                                                                      \
        for (ptrdiff_t j = 0; j < width; j++) {                                            \
            UINT b = bits[j];                                                              \
            out[j] = b;                                                                    \
            bad |= (UINT)((b & EXP_MASK) == EXP_MASK);                                     \
        }                                                                                  \
        if (bad) return row;                                                               \
    }                                                                                      \
    return -1;                                                                             \
}

CNET_ADAM(float, f32, sqrtf)
CNET_ADAM(double, f64, sqrt)
CNET_SGD(float, f32)
CNET_SGD(double, f64)
CNET_GATHER(float, f32, cnet_bits32, 0x7f800000u)
CNET_GATHER(double, f64, cnet_bits64, 0x7ff0000000000000ull)

#endif
