/* A team of threads for the step runner: the calling thread plus n - 1 workers that each
 * run one piece of a phase (a slice of a layer's outputs), then report it done.
 *
 * Why our own threads rather than the BLAS's: a layer whose weights, gradients and
 * optimizer state are split between the cores by output feature keeps each part in the
 * cache of the core that updates it, so a step moves almost nothing between cores. With
 * the BLAS's threads, every threaded product reads operands another core has just written
 * (the gathered batch, the weights the optimizer just updated). Measured on a 2-core
 * machine, an mnist step: 330 µs with the BLAS's two threads, 270 with a team of two.
 *
 * During a compiled call (many steps) the workers spin between phases (with the CPU's
 * pause hint), as the BLAS's own threads do: a phase lasts tens of microseconds, shorter
 * than a sleep and a wake-up. The spin can do useful work first (cnet_wait_change's idle
 * hook: the step runner prefetches the next batch there). Between calls they wait on a
 * condition variable (cnet_park), so no thread spins outside a call, and a call costs a
 * wake-up, not a thread start.
 * POSIX threads only; elsewhere CNET_HAS_TEAM is 0 and every phase runs on the calling
 * thread. */
#ifndef CNET_TEAM_H
#define CNET_TEAM_H

#if defined(__GNUC__) && (defined(__unix__) || defined(__APPLE__))
#define CNET_HAS_TEAM 1
#include <pthread.h>
#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cnet_cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cnet_cpu_relax() __asm__ __volatile__("yield")
#else
#define cnet_cpu_relax() ((void)0)
#endif

#include <unistd.h>

typedef pthread_t cnet_thread;

/* Where the workers wait between calls, without spinning: a mutex, a condition variable
 * and a count of calls, bumped to wake them for the next call; closing tells them to exit.
 * pid: the process that started them (a forked child inherits the struct, not the threads). */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    long calls;
    int closing;
    long pid;
} cnet_park;

static inline void cnet_park_init(cnet_park* park)
{
    pthread_mutex_init(&park->lock, NULL);
    pthread_cond_init(&park->wake, NULL);
    park->calls = 0;
    park->closing = 0;
    park->pid = (long)getpid();
}

static inline void cnet_park_destroy(cnet_park* park)
{
    pthread_cond_destroy(&park->wake);
    pthread_mutex_destroy(&park->lock);
}

static inline int cnet_park_owned(const cnet_park* park) { return park->pid == (long)getpid(); }

/* Wake the parked workers for the next call, or (closing) to exit. */
static inline void cnet_park_wake(cnet_park* park, int closing)
{
    pthread_mutex_lock(&park->lock);
    park->calls++;
    park->closing |= closing;
    pthread_cond_broadcast(&park->wake);
    pthread_mutex_unlock(&park->lock);
}

/* Wait for the call after *seen (returns 1, *seen updated) or for closing (returns 0). */
static inline int cnet_park_wait(cnet_park* park, long* seen)
{
    int go;
    pthread_mutex_lock(&park->lock);
    while (park->calls == *seen && !park->closing)
        pthread_cond_wait(&park->wake, &park->lock);
    *seen = park->calls;
    go = !park->closing;
    pthread_mutex_unlock(&park->lock);
    return go;
}

/* Start fn(arg) on a new thread; 0 on success. */
static inline int cnet_thread_start(cnet_thread* thread, void* (*fn)(void*), void* arg)
{
    return pthread_create(thread, NULL, fn, arg);
}

static inline void cnet_thread_join(cnet_thread thread) { pthread_join(thread, NULL); }

static inline long cnet_atomic_load(const long* value)
{
    return __atomic_load_n(value, __ATOMIC_ACQUIRE);
}

static inline void cnet_atomic_store(long* value, long v)
{
    __atomic_store_n(value, v, __ATOMIC_RELEASE);
}

static inline void cnet_atomic_add(long* value, long v)
{
    __atomic_add_fetch(value, v, __ATOMIC_ACQ_REL);
}

/* Spin until *value != old and return the new value. While it waits, idle(ctx) (if not
 * NULL) does a small piece of useful work each time until it returns 0: a worker's time
 * between phases is spent prefetching the next batch. After many idle spins, yield the
 * core: where there are more threads than free cores, the one we wait for needs it. */
static inline long cnet_wait_change(const long* value, long old, int (*idle)(void*), void* ctx)
{
    long now, spins = 0;
    while ((now = cnet_atomic_load(value)) == old) {
        if (idle != NULL && idle(ctx))
            continue;
        idle = NULL;
        cnet_cpu_relax();
        if (++spins % 4096 == 0) sched_yield();
    }
    return now;
}

/* Spin until *value == target. */
static inline void cnet_wait_equal(const long* value, long target)
{
    long spins = 0;
    while (cnet_atomic_load(value) != target) {
        cnet_cpu_relax();
        if (++spins % 4096 == 0) sched_yield();
    }
}
#else
#define CNET_HAS_TEAM 0
typedef int cnet_thread;
typedef struct { long calls; } cnet_park;
static inline void cnet_park_init(cnet_park* park) { park->calls = 0; }
static inline void cnet_park_destroy(cnet_park* park) { (void)park; }
static inline int cnet_park_owned(const cnet_park* park) { (void)park; return 1; }
static inline void cnet_park_wake(cnet_park* park, int closing) { (void)park; (void)closing; }
static inline int cnet_park_wait(cnet_park* park, long* seen) { (void)park; (void)seen; return 0; }
static inline int cnet_thread_start(cnet_thread* thread, void* (*fn)(void*), void* arg)
{
    (void)thread; (void)fn; (void)arg;
    return -1;
}
static inline void cnet_thread_join(cnet_thread thread) { (void)thread; }
static inline long cnet_atomic_load(const long* value) { return *value; }
static inline void cnet_atomic_store(long* value, long v) { *value = v; }
static inline void cnet_atomic_add(long* value, long v) { *value += v; }
static inline long cnet_wait_change(const long* value, long old, int (*idle)(void*), void* ctx)
{
    (void)old; (void)idle; (void)ctx;
    return *value;
}
static inline void cnet_wait_equal(const long* value, long target) { (void)value; (void)target; }
#endif

#endif
