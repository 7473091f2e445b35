"""The step runner: a whole training step of a Sequential without returning to Python.

A plan is built once from the model, the loss and the optimizer: C structs with the
layers' sizes and arena offsets, and raw pointers into preallocated workspaces. After
that a training step touches no Python object: gather the batch (checking finiteness as
rows pass), forward through every layer, the fused loss and its gradient, backward in
reverse, and the optimizer's loop over the flat arena. Many steps run per call.

Large dense layers are split by output feature among a team of threads (team.h): each
thread computes its block of the layer's outputs, its rows of the weight gradient, and
the optimizer update of those rows, so the weights and optimizer state of a block stay in
one core's cache from step to step. A large layer after the first with too few outputs
for that is split by input feature instead (run_input_piece). A layer whose batch holds
at least twice its outputs is split by rows of the batch (run_rows_piece): each thread
takes its rows through the layer and the activation after it (of the first layer, it
gathers them itself), and the weight gradient is the threads' partial sums added, each
thread adding and updating its block of outputs. The rest of the step runs on the calling
thread.

Workspace layout (one flat array): the gathered batch (B, in), then each layer's output
(B, width), then two gradient buffers (B, max width) used in turn, then float targets.
"""
from cython cimport floating
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import atexit
import numbers
import time

import numpy as np

from cnet import _blas
from cnet._activations cimport activation_backward, activation_forward
from cnet._batchnorm cimport batchnorm_backward_ptr, batchnorm_forward_ptr
from cnet._blas cimport (blas_threads, get_threaded_min_work, one_thread_begin,
                         one_thread_end)
from cnet._dense cimport (dense_backward_input_ptr, dense_backward_params_ptr,
                          dense_backward_ptr, dense_forward_ptr)
from cnet._dropout cimport dropout_backward_ptr, dropout_forward_ptr
from cnet._losses cimport (LOSS_BCE, LOSS_BCE_WITH_LOGITS, LOSS_SOFT_CROSS_ENTROPY, LossConfig,
                           fill_loss_config, loss_ptr)
from cnet._optim cimport (OptimConfig, clip_grad_norm_ptr, fill_optim_config,
                          optimizer_step_ptr)

cdef enum:
    OP_DENSE = 0
    OP_ACTIVATION = 1
    OP_DROPOUT = 2
    OP_BATCHNORM = 3

ctypedef struct Op:
    int kind               # OP_DENSE, OP_ACTIVATION, OP_DROPOUT or OP_BATCHNORM
    int activation         # ACT_* code for OP_ACTIVATION
    double slope           # leaky ReLU's negative slope
    Py_ssize_t n_in        # features in
    Py_ssize_t n_out       # features out
    Py_ssize_t weight      # arena offset of the weight (Dense: (out, in); BatchNorm: (C,)), or -1
    Py_ssize_t bias        # arena offset of the bias, -1 without one
    Py_ssize_t output      # workspace offset of this op's (B, n_out) output
    Py_ssize_t saved       # workspace offset of what backward needs: the dropout mask
                           # (B, n_out), or BatchNorm's xhat (B, C), mean, invstd, sums (4C)
    double p               # dropout probability
    uint64_t* rng          # dropout's (key, counter)
    double eps             # BatchNorm
    double momentum        # BatchNorm (< 0: cumulative average)
    void* running_mean     # BatchNorm running statistics, or NULL
    void* running_var
    int64_t* num_batches_tracked
    int first_span         # this op's parameters in the optimizer's spans: spans
    int n_spans            # [first_span, first_span + n_spans)
    int pieces             # Dense: threads sharing it in this call (1: the caller alone)
    bint by_input          # Dense: too few outputs to split, so shared by input feature
    bint by_rows           # Dense: a batch of at least twice its outputs, so shared by rows

ctypedef struct Span:
    Py_ssize_t offset      # arena offset
    Py_ssize_t length
    int group              # index into the optimizer configs

cdef extern from "team.h" nogil:
    ctypedef unsigned long cnet_thread
    ctypedef struct cnet_park:
        long calls
    int cnet_thread_start(cnet_thread* thread, void* (*fn)(void*) noexcept nogil, void* arg)
    void cnet_thread_join(cnet_thread thread)
    void cnet_atomic_store(long* value, long v)
    void cnet_atomic_add(long* value, long v)
    long cnet_wait_change(const long* value, long old, int (*idle)(void*) noexcept nogil,
                          void* ctx)
    void cnet_wait_equal(const long* value, long target)
    void cnet_park_init(cnet_park* park)
    void cnet_park_destroy(cnet_park* park)
    bint cnet_park_owned(const cnet_park* park)
    void cnet_park_wake(cnet_park* park, int closing)
    bint cnet_park_wait(cnet_park* park, long* seen)
    int CNET_HAS_TEAM

cdef enum:
    TASK_FORWARD = 0           # each thread: its block of a Dense layer's outputs
    TASK_BACKWARD_INPUT = 1    # its block of columns of d loss / d input
    TASK_BACKWARD_PARAMS = 2   # its rows of the weight gradient, bias gradient, update
    # (an op shared by input feature: its rows of the batch forward, and its columns of the
    # weight gradient: run_input_piece)
    TASK_PARK = 3              # the call ends: back to waiting for the next one
    TASK_PREDICT = 4           # its share of the rows, through every layer
    TASK_SUM_PARAMS = 5        # an op shared by rows: its rows of the weight gradient summed
                               # over the threads' partial ones, bias gradient, update

ctypedef struct Team:
    long generation        # bumped by the calling thread to start a phase
    long finished          # workers done with the current phase
    int size               # threads, the calling one included
    int task               # TASK_*
    int op                 # the Dense op of the phase
    Py_ssize_t rows
    const void* inp        # the op's input (op 0: the calling thread's gathered batch)
    void* grad_out         # d loss / d output of the op
    void* grad_in          # d loss / d input, written by TASK_BACKWARD_INPUT
    long step              # > 0: TASK_BACKWARD_PARAMS applies the optimizer update
    const void* source     # the data the batch was gathered from, so workers gather
    const int64_t* order   # their own copy of op 0's input rather than read the
    Py_ssize_t start       # calling core's (set by gather_and_begin)
    Py_ssize_t ahead_rows  # rows of the next batch after this one (0: none in this call)
    void* copies           # (size - 1) copies of (B, n_in), one per worker
    void* partials         # (size - 1) partial gradients (n_out, n_in) + (n_out,) of an op
                           # shared by rows, one per worker
    bint flush             # flush denormals on the workers as on the calling thread
    cnet_park park         # where the workers wait between calls
    Py_ssize_t* bad        # TASK_PREDICT: each thread's first non-finite row, or -1

ctypedef struct Ahead:          # rows next .. end - 1 of the data (through order, if not
    const void* source     # NULL): the next batch, which a worker prefetches while it
    const int64_t* order   # waits between phases
    Py_ssize_t next
    Py_ssize_t end
    Py_ssize_t row_bytes
    Py_ssize_t done        # bytes of row `next` already requested

ctypedef struct Worker:
    void* plan
    Team* team
    int index
    bint is_double

ctypedef struct Plan:
    Op* ops
    int n_ops
    Py_ssize_t batch       # B: rows the workspace holds
    Py_ssize_t n_in
    Py_ssize_t n_out
    void* params           # the model's flat arena
    void* grads
    void* state[3]         # optimizer state arrays (or NULL)
    void* work
    Py_ssize_t grad_a      # workspace offsets of the two gradient buffers
    Py_ssize_t grad_b
    Py_ssize_t target      # workspace offset of float targets (MSE)
    int64_t* class_target  # (B,) gathered class indices (cross-entropy)
    LossConfig loss
    Span* spans
    int n_spans
    OptimConfig* configs
    Py_ssize_t n_params
    double max_grad_norm   # clip the gradients' global norm to this when > 0
    bint training          # dropout active, BatchNorm on batch statistics
    Team* team             # during a call with a team, else NULL


cdef extern from "kernels.h" nogil:
    Py_ssize_t cnet_gather_rows_f32(float* dst, const float* src, const int64_t* order,
                                    Py_ssize_t start, Py_ssize_t rows, Py_ssize_t width)
    Py_ssize_t cnet_gather_rows_f64(double* dst, const double* src, const int64_t* order,
                                    Py_ssize_t start, Py_ssize_t rows, Py_ssize_t width)
    Py_ssize_t cnet_data_row(const int64_t* order, Py_ssize_t i)
    void cnet_prefetch_bytes(const void* p, Py_ssize_t begin, Py_ssize_t end)
    void cnet_prefetch_rows(const void* src, const int64_t* order, Py_ssize_t start,
                            Py_ssize_t rows, Py_ssize_t bytes_per_row)
    uint64_t cnet_fp_flush_begin(int on)
    void cnet_fp_flush_end(uint64_t mode)
    int CNET_HAS_FLUSH



cdef bint flush_denormal = CNET_HAS_FLUSH


def set_flush_denormal(mode):
    """Whether compiled training and inference runs treat denormal floats as zero (the
    default). Denormals (|x| < 1.2e-38 in float32) take a slow path in the CPU's arithmetic
    and appear in training wherever a gradient stays zero, e.g. Adam's first moment of a
    dead ReLU unit. Flushed, such a moment stops decaying a little above that size (its
    decrement is itself denormal) or drops to 0, instead of creeping through the
    denormals: differences below 1e-37 either way. The mode is set on
    the calling thread for the duration of each StepRunner call and restored after it,
    so NumPy and the rest of the program keep IEEE gradual underflow. Returns True where
    the CPU supports it (x86-64 with SSE2, AArch64), as torch.set_flush_denormal does;
    elsewhere the setting has no effect."""
    global flush_denormal
    if not isinstance(mode, (bool, np.bool_)):
        raise TypeError(f"mode: expected True or False, got {mode!r}")
    flush_denormal = bool(mode) and CNET_HAS_FLUSH
    return bool(CNET_HAS_FLUSH)


def get_flush_denormal():
    """The current set_flush_denormal mode."""
    return bool(flush_denormal)


cdef int team_threads = 0      # set_num_threads; 0: as many as the BLAS may use
HAS_TEAM = bool(CNET_HAS_TEAM)  # False where threads are not supported: no team


def set_num_threads(n):
    """Threads that share each large Dense layer in compiled training and inference (as
    torch.set_num_threads): None, the default, uses as many as the BLAS may (its own setting:
    OPENBLAS_NUM_THREADS, threadpoolctl's limits); 1 runs every step on the calling thread.
    Layers share threads only when their product is large enough (cnet.set_threaded_min_work).
    Returns the previous setting. Results agree with one thread's except in the last bits:
    the BLAS picks another kernel for a smaller product, and a layer split by batch rows (a
    batch of at least twice its outputs) sums its weight gradient in parts, one per thread,
    each worker's part held in memory the size of the layer's parameters; with the same
    setting, runs repeat bit for bit."""
    global team_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral)):
        raise TypeError(f"n: expected an int >= 1 or None, got {n!r}")
    if n is not None and not 1 <= n <= 1024:
        raise ValueError(f"n: expected an int in [1, 1024] or None, got {n}")
    previous = get_num_threads()
    team_threads = 0 if n is None else n
    return previous


def get_num_threads():
    """The set_num_threads setting (None: follow the BLAS)."""
    return team_threads or None


cdef inline Py_ssize_t gather_rows(floating* dst, const floating* src, const int64_t* order,
                                   Py_ssize_t start, Py_ssize_t rows,
                                   Py_ssize_t width) noexcept nogil:
    """Copy rows order[start:start+rows] of src into dst; the first non-finite row or -1."""
    if floating is float:
        return cnet_gather_rows_f32(dst, src, order, start, rows, width)
    else:
        return cnet_gather_rows_f64(dst, src, order, start, rows, width)


cdef void forward_pass(Plan* p, const floating* x, Py_ssize_t rows, int first,
                       Py_ssize_t row0) noexcept nogil:
    """Every layer's output from the input rows x (B, n_in), into the workspace, from op
    `first` on (the ones before it are done); the rows go to rows row0.. of each output (a
    thread's share of a prediction)."""
    cdef floating* work = <floating*>p.work
    cdef floating* params = <floating*>p.params
    cdef const floating* inp = x if first == 0 else work + p.ops[first - 1].output
    cdef floating* out
    cdef floating* saved
    cdef Op* op
    cdef int i
    for i in range(first, p.n_ops):
        op = &p.ops[i]
        out = work + op.output + row0 * op.n_out
        saved = work + op.saved + row0 * op.n_out
        if op.kind == OP_DENSE and op.pieces > 1:     # each thread its block of outputs
            p.team.inp = inp
            p.team.rows = rows
            run_phase(p, TASK_FORWARD, i, work)
        elif op.kind == OP_DENSE:
            dense_forward_ptr(out, inp, params + op.weight,
                              params + op.bias if op.bias >= 0 else <floating*>NULL,
                              <int>rows, <int>op.n_in, <int>op.n_out, <int>op.n_out)
        elif op.kind == OP_ACTIVATION:
            if not applies_next(p, i - 1):
                activation_forward(op.activation, out, inp, rows, op.n_out, op.slope)
        elif op.kind == OP_DROPOUT:
            if p.training and op.p > 0:
                dropout_forward_ptr(out, saved, inp, rows * op.n_out, op.p, op.rng)
            else:
                memcpy(out, inp, rows * op.n_out * sizeof(floating))
        else:
            batchnorm_forward_ptr(out, saved, saved + p.batch * op.n_out,
                                  saved + (p.batch + 1) * op.n_out,
                                  <floating*>op.running_mean, <floating*>op.running_var,
                                  op.num_batches_tracked, inp,
                                  params + op.weight if op.weight >= 0 else <floating*>NULL,
                                  params + op.bias if op.bias >= 0 else <floating*>NULL,
                                  rows, op.n_out, op.eps, op.momentum, p.training)
        inp = out


cdef Py_ssize_t count_correct(const floating* logits, const int64_t* target, Py_ssize_t rows,
                              Py_ssize_t classes, int64_t ignore_index) noexcept nogil:
    """Rows whose largest logit (the first, on ties) is at the target class."""
    cdef Py_ssize_t r, c, best, correct = 0
    cdef const floating* row
    for r in range(rows):
        if target[r] == ignore_index:
            continue
        row = logits + r * classes
        best = 0
        for c in range(1, classes):
            if row[c] > row[best]:
                best = c
        correct += best == target[r]
    return correct


cdef Py_ssize_t count_matches(LossConfig* loss, const floating* outputs,
                              const floating* target, Py_ssize_t rows,
                              Py_ssize_t width) noexcept nogil:
    """Predictions right against float targets, as Trainer.evaluate counts them: for the
    BCE losses each of the rows * width labels (output above 0.5, or a logit above 0,
    against a target above 0.5); for soft labels the rows whose largest logit is at their
    most probable class (the first, on ties); 0 for the other losses."""
    cdef Py_ssize_t i, r, c, best, likeliest, correct = 0
    cdef floating threshold = 0.5 if loss.kind == LOSS_BCE else 0
    if loss.kind == LOSS_BCE or loss.kind == LOSS_BCE_WITH_LOGITS:
        for i in range(rows * width):
            correct += (outputs[i] > threshold) == (target[i] > 0.5)
    elif loss.kind == LOSS_SOFT_CROSS_ENTROPY:
        for r in range(rows):
            best = likeliest = 0
            for c in range(1, width):
                if outputs[r * width + c] > outputs[r * width + best]:
                    best = c
                if target[r * width + c] > target[r * width + likeliest]:
                    likeliest = c
            correct += best == likeliest
    return correct


cdef double forward_loss(Plan* p, floating* x, Py_ssize_t rows, int first,
                         int64_t* correct) noexcept nogil:
    """Forward from op `first` and the loss on the batch already gathered in x (its targets
    too); the loss's gradient goes to the first gradient buffer. correct[0] gets the number
    of predictions right (rows for classification, labels for the BCE losses)."""
    cdef floating* work = <floating*>p.work
    cdef floating* logits
    cdef double loss
    forward_pass(p, x, rows, first, 0)
    logits = work + p.ops[p.n_ops - 1].output
    if p.loss.class_targets:
        loss = loss_ptr(&p.loss, work + p.grad_a, logits, p.class_target, rows, p.n_out)
        correct[0] = count_correct(logits, p.class_target, rows, p.n_out, p.loss.ignore_index)
    else:
        loss = loss_ptr(&p.loss, work + p.grad_a, logits, work + p.target, rows, p.n_out)
        correct[0] = count_matches(&p.loss, logits, work + p.target, rows, p.n_out)
    return loss


cdef void backward_pass(Plan* p, floating* x, Py_ssize_t rows, long step) noexcept nogil:
    """Backward in reverse from the loss's gradient; the parameter gradients overwrite the
    arena's (beta = 0, so no zeroing pass is needed). With step > 0, each op's parameters
    get their optimizer update as soon as its backward is done: its weights were just read
    by the product for the input gradient and its gradients just written, so the update
    finds them in cache instead of making one more pass over the whole arena."""
    cdef floating* work = <floating*>p.work
    cdef floating* params = <floating*>p.params
    cdef floating* grads = <floating*>p.grads
    cdef floating* grad_out = work + p.grad_a     # d loss / d (output of op i)
    cdef floating* grad_in = work + p.grad_b
    cdef floating* swap
    cdef floating* saved
    cdef const floating* inp
    cdef Op* op
    cdef int i
    for i in range(p.n_ops - 1, -1, -1):
        op = &p.ops[i]
        inp = x if i == 0 else work + p.ops[i - 1].output
        if op.kind == OP_DENSE:
            if op.pieces > 1:
                p.team.inp = inp
                p.team.rows = rows
                p.team.grad_out = grad_out
                p.team.grad_in = grad_in
                p.team.step = step
                if i > 0 and not op.by_rows:    # (by rows: in the next phase)
                    run_phase(p, TASK_BACKWARD_INPUT, i, work)
                run_phase(p, TASK_BACKWARD_PARAMS, i, work)     # updates its own rows
                if op.by_rows:                                  # (here, once summed)
                    run_phase(p, TASK_SUM_PARAMS, i, work)
            else:
                dense_backward_ptr(grads + op.weight,
                                   grads + op.bias if op.bias >= 0 else <floating*>NULL,
                                   grad_in if i > 0 else <floating*>NULL,
                                   grad_out, inp, params + op.weight,
                                   <int>rows, <int>op.n_in, <int>op.n_out, 0)
            swap = grad_out
            grad_out = grad_in
            grad_in = swap
        elif op.kind == OP_BATCHNORM:   # its parameters need gradients even first
            saved = work + op.saved
            batchnorm_backward_ptr(grad_out if i > 0 else <floating*>NULL,
                                   grads + op.weight if op.weight >= 0 else <floating*>NULL,
                                   grads + op.bias if op.bias >= 0 else <floating*>NULL,
                                   saved + (p.batch + 2) * op.n_out, grad_out, saved,
                                   saved + (p.batch + 1) * op.n_out,
                                   params + op.weight if op.weight >= 0 else <floating*>NULL,
                                   rows, op.n_out, False)
        elif i == 0:
            pass                        # no parameters, and nobody needs d loss / d input
        elif op.kind == OP_ACTIVATION and not applies_next(p, i - 1):
            activation_backward(op.activation, grad_out, grad_out, inp, work + op.output,
                                rows, op.n_out, op.slope)
        elif op.kind == OP_DROPOUT and op.p > 0:
            dropout_backward_ptr(grad_out, grad_out, work + op.saved, rows * op.n_out)
        if step > 0 and (op.pieces == 1 or op.by_input):   # else its pieces updated it
            update_spans(p, params, grads, op.first_span, op.n_spans, step)


cdef void update_spans(Plan* p, floating* params, floating* grads, int first, int count,
                       long step) noexcept nogil:
    """The optimizer's loop over spans [first, first + count)."""
    cdef int i
    for i in range(first, first + count):
        update_range(p, params, grads, &p.spans[i], 0, p.n_params, step)


cdef void update_range(Plan* p, floating* params, floating* grads, Span* span,
                       Py_ssize_t begin, Py_ssize_t end, long step) noexcept nogil:
    """The optimizer's loop over the part of a span inside arena entries [begin, end)."""
    cdef Py_ssize_t lo = max(begin, span.offset), hi = min(end, span.offset + span.length)
    if lo < hi:
        optimizer_step_ptr(&p.configs[span.group], params + lo,
                           state_at(<floating*>p.state[0], lo),
                           state_at(<floating*>p.state[1], lo),
                           state_at(<floating*>p.state[2], lo),
                           grads + lo, hi - lo, step)


cdef inline floating* state_at(floating* state, Py_ssize_t offset) noexcept nogil:
    return state + offset if state != NULL else NULL


cdef inline Py_ssize_t piece_start(Py_ssize_t n, int pieces, int s) noexcept nogil:
    """Where piece s of n features begins: whole blocks of 16 (64 bytes of float32), so two
    threads never write one cache line of a block of outputs. (Blocks of columns of a
    matrix whose rows are not a multiple of 16 wide still share a line at row ends.)"""
    return min(n, ((n + 15) // 16 * s // pieces) * 16)


cdef void run_piece(Plan* p, int s, floating* work) noexcept nogil:
    """Thread s's piece of the team's current phase."""
    cdef Team* t = p.team
    cdef Op* op = &p.ops[t.op]
    cdef floating* params = <floating*>p.params
    cdef floating* grads = <floating*>p.grads
    cdef const floating* inp = <const floating*>t.inp
    cdef Py_ssize_t lo, hi
    if t.task == TASK_PREDICT:
        lo = t.rows * s // t.size
        hi = t.rows * (s + 1) // t.size
        t.bad[s] = gather_rows(<floating*>NULL, inp, NULL, lo, hi - lo, p.n_in)
        if t.bad[s] < 0 and lo < hi:
            forward_pass(p, inp + lo * p.n_in, hi - lo, 0, lo)
        return
    if s >= op.pieces:
        return
    if op.by_rows:
        run_rows_piece(p, op, s, work, inp)
        return
    if t.op == 0 and s > 0:    # op 0 is shared only after gather_and_begin
        inp = <floating*>t.copies + (s - 1) * p.batch * p.n_in
        if t.task == TASK_FORWARD:      # the rows come from memory, not the other core
            gather_rows(<floating*>inp, <const floating*>t.source, t.order, t.start,
                        t.rows, p.n_in)
    if op.by_input and t.task != TASK_BACKWARD_INPUT:
        run_input_piece(p, op, s, work, inp)
        return
    if t.task == TASK_BACKWARD_INPUT:
        lo = piece_start(op.n_in, op.pieces, s)
        hi = piece_start(op.n_in, op.pieces, s + 1)
        if lo < hi:
            dense_backward_input_ptr(<floating*>t.grad_in + lo, <const floating*>t.grad_out,
                                     params + op.weight + lo, <int>t.rows, <int>(hi - lo),
                                     <int>op.n_out, <int>op.n_in)
        return
    lo = piece_start(op.n_out, op.pieces, s)
    hi = piece_start(op.n_out, op.pieces, s + 1)
    if lo >= hi:
        return
    if t.task == TASK_FORWARD:
        dense_forward_ptr(work + op.output + lo, inp, params + op.weight + lo * op.n_in,
                          params + op.bias + lo if op.bias >= 0 else <floating*>NULL,
                          <int>t.rows, <int>op.n_in, <int>(hi - lo), <int>op.n_out)
        return
    dense_backward_params_ptr(grads + op.weight + lo * op.n_in,
                              grads + op.bias + lo if op.bias >= 0 else <floating*>NULL,
                              <const floating*>t.grad_out + lo, inp, <int>t.rows,
                              <int>op.n_in, <int>(hi - lo), <int>op.n_out, <int>op.n_in, 0)
    if t.step > 0:
        update_block(p, op, params, grads, lo, hi, t.step)


cdef void update_block(Plan* p, Op* op, floating* params, floating* grads, Py_ssize_t lo,
                       Py_ssize_t hi, long step) noexcept nogil:
    """The optimizer update of a Dense op's block of outputs [lo, hi): those rows of the
    weight and entries of the bias."""
    cdef int i
    for i in range(op.first_span, op.first_span + op.n_spans):
        update_range(p, params, grads, &p.spans[i], op.weight + lo * op.n_in,
                     op.weight + hi * op.n_in, step)
        if op.bias >= 0:
            update_range(p, params, grads, &p.spans[i], op.bias + lo, op.bias + hi, step)


cdef inline int row_parts(Op* op, Py_ssize_t rows) noexcept nogil:
    """Threads with rows of a batch of `rows` in an op shared by rows (each at least one)."""
    return <int>min(<Py_ssize_t>op.pieces, rows)


cdef inline Py_ssize_t partial_size(Op* op) noexcept nogil:
    """Elements of one thread's partial gradient of an op shared by rows: its weight, then
    room for its bias."""
    return op.n_out * op.n_in + op.n_out


cdef inline bint applies_next(Plan* p, int i) noexcept nogil:
    """Whether op i is a Dense op shared by rows followed by an activation, which its
    threads then apply to their own rows (forward and backward), so the rows stay on their
    thread's core."""
    return (i >= 0 and p.ops[i].by_rows and p.ops[i].pieces > 1 and i + 1 < p.n_ops
            and p.ops[i + 1].kind == OP_ACTIVATION)


cdef void run_rows_piece(Plan* p, Op* op, int s, floating* work,
                         const floating* inp) noexcept nogil:
    """Thread s's piece of a Dense op shared by batch rows (a batch of at least twice its
    outputs, where each thread reading and packing the whole batch for its block of outputs
    costs more than reading the whole weight): forward or backward over its rows of the
    batch, or (TASK_SUM_PARAMS) the sum and update of its block of outputs."""
    cdef Team* t = p.team
    cdef int parts = row_parts(op, t.rows)
    cdef Py_ssize_t lo = t.rows * s // parts, hi = t.rows * (s + 1) // parts
    if t.task == TASK_SUM_PARAMS:
        sum_partials(p, op, s, parts, <floating*>p.grads)
    elif s >= parts:
        return
    elif t.task == TASK_FORWARD:
        rows_forward(p, op, s, work, inp, lo, hi)
    else:
        rows_backward(p, op, s, work, inp, lo, hi)


cdef void rows_forward(Plan* p, Op* op, int s, floating* work, const floating* inp,
                       Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Rows [lo, hi) of the op's output, and of the activation after it. Of the first op,
    the thread gathers and checks those rows first (t.bad[s]: -1 or a non-finite row)."""
    cdef Team* t = p.team
    cdef floating* params = <floating*>p.params
    cdef Op* act = op + 1
    if t.op == 0:
        t.bad[s] = gather_rows(<floating*>inp + lo * op.n_in, <const floating*>t.source,
                               t.order, t.start + lo, hi - lo, op.n_in)
        if t.bad[s] >= 0:
            return
    dense_forward_ptr(work + op.output + lo * op.n_out, inp + lo * op.n_in, params + op.weight,
                      params + op.bias if op.bias >= 0 else <floating*>NULL,
                      <int>(hi - lo), <int>op.n_in, <int>op.n_out, <int>op.n_out)
    if applies_next(p, t.op):
        activation_forward(act.activation, work + act.output + lo * op.n_out,
                           work + op.output + lo * op.n_out, hi - lo, op.n_out, act.slope)


cdef void rows_backward(Plan* p, Op* op, int s, floating* work, const floating* inp,
                        Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Rows [lo, hi) backward, in one phase, as they need nothing of the other threads':
    d loss / d the op's output (through the activation after it), d loss / d its input,
    and the weight gradient summed over these rows: thread 0's into the arena, the others'
    into their partials."""
    cdef Team* t = p.team
    cdef floating* grad_out = <floating*>t.grad_out + lo * op.n_out
    cdef floating* weight_grad = <floating*>p.grads + op.weight
    cdef floating* bias_grad = <floating*>p.grads + op.bias if op.bias >= 0 else NULL
    cdef Op* act = op + 1
    if applies_next(p, t.op):
        activation_backward(act.activation, grad_out, grad_out, work + op.output + lo * op.n_out,
                            work + act.output + lo * op.n_out, hi - lo, op.n_out, act.slope)
    if t.op > 0:
        dense_backward_input_ptr(<floating*>t.grad_in + lo * op.n_in, grad_out,
                                 <floating*>p.params + op.weight, <int>(hi - lo),
                                 <int>op.n_in, <int>op.n_out, <int>op.n_in)
    if s > 0:
        weight_grad = <floating*>t.partials + (s - 1) * partial_size(op)
        bias_grad = weight_grad + op.n_out * op.n_in if op.bias >= 0 else NULL
    dense_backward_params_ptr(weight_grad, bias_grad, grad_out, inp + lo * op.n_in,
                              <int>(hi - lo), <int>op.n_in, <int>op.n_out, <int>op.n_out,
                              <int>op.n_in, 0)


cdef void sum_partials(Plan* p, Op* op, int s, int parts, floating* grads) noexcept nogil:
    """Thread s's block of outputs of an op shared by rows: the other threads' partial
    gradients added to thread 0's in thread order, then the block's update."""
    cdef Team* t = p.team
    cdef Py_ssize_t lo = piece_start(op.n_out, op.pieces, s)
    cdef Py_ssize_t hi = piece_start(op.n_out, op.pieces, s + 1), j
    cdef const floating* partial
    cdef int k
    if lo >= hi:
        return
    for k in range(1, parts):
        partial = <const floating*>t.partials + (k - 1) * partial_size(op)
        for j in range(lo * op.n_in, hi * op.n_in):
            grads[op.weight + j] += partial[j]
        if op.bias >= 0:
            for j in range(lo, hi):
                grads[op.bias + j] += partial[op.n_out * op.n_in + j]
    if t.step > 0:
        update_block(p, op, <floating*>p.params, grads, lo, hi, t.step)


cdef void run_input_piece(Plan* p, Op* op, int s, floating* work,
                          const floating* inp) noexcept nogil:
    """Thread s's piece of a Dense op shared by input feature (a classifier's head after a
    wide layer: its few outputs make no blocks of 16): in the forward phase its share of the
    batch's rows; in the weight-gradient phase its block of columns of the weight gradient
    (the block of input features whose d loss / d input it computed too), and on thread 0
    the bias's. Each output element is summed as on one thread. The calling thread updates
    the op's few parameters afterwards, in one call rather than one per row and thread."""
    cdef Team* t = p.team
    cdef floating* params = <floating*>p.params
    cdef floating* grads = <floating*>p.grads
    cdef Py_ssize_t lo, hi
    if t.task == TASK_FORWARD:
        lo = t.rows * s // op.pieces
        hi = t.rows * (s + 1) // op.pieces
        if lo < hi:
            dense_forward_ptr(work + op.output + lo * op.n_out, inp + lo * op.n_in,
                              params + op.weight,
                              params + op.bias if op.bias >= 0 else <floating*>NULL,
                              <int>(hi - lo), <int>op.n_in, <int>op.n_out, <int>op.n_out)
        return
    lo = piece_start(op.n_in, op.pieces, s)
    hi = piece_start(op.n_in, op.pieces, s + 1)
    if lo >= hi:
        return
    dense_backward_params_ptr(grads + op.weight + lo,
                              grads + op.bias if op.bias >= 0 and s == 0 else <floating*>NULL,
                              <const floating*>t.grad_out, inp + lo, <int>t.rows,
                              <int>(hi - lo), <int>op.n_out, <int>op.n_out, <int>op.n_in, 0)


cdef void run_phase(Plan* p, int task, int op, floating* work) noexcept nogil:
    """Start a phase on the workers, do piece 0 here, and wait for the others."""
    start_phase(p, task, op)
    run_piece(p, 0, work)
    cnet_wait_equal(&p.team.finished, p.team.size - 1)


cdef void start_phase(Plan* p, int task, int op) noexcept nogil:
    """The fields of the team set before the release store are what the workers see after
    their acquiring load."""
    cdef Team* t = p.team
    t.task = task
    t.op = op
    cnet_atomic_store(&t.finished, 0)
    cnet_atomic_store(&t.generation, t.generation + 1)


cdef void* worker_main(void* arg) noexcept nogil:
    """A worker: wait for a call, run its pieces of the call's phases, wait again."""
    cdef Worker* w = <Worker*>arg
    cdef Team* t = w.team
    cdef long calls = 0, seen = 0
    cdef uint64_t mode
    while cnet_park_wait(&t.park, &calls):
        mode = cnet_fp_flush_begin(t.flush)
        if w.is_double:
            seen = run_call(<Plan*>w.plan, w.index, seen, <double*>NULL)
        else:
            seen = run_call(<Plan*>w.plan, w.index, seen, <float*>NULL)
        cnet_fp_flush_end(mode)
        cnet_atomic_add(&t.finished, 1)     # parked again
    return NULL


cdef long run_call(Plan* p, int index, long seen, floating* kind) noexcept nogil:
    """Worker `index`'s pieces of each phase until the call ends; the last phase seen.
    Where the team shares the first layer, a worker with a piece of it prefetches the next
    batch's rows between phases (the calling thread, which meanwhile runs the layers the
    team does not share, leaves that to the workers): every thread's gather of that batch
    then finds its rows on chip."""
    cdef Team* t = p.team
    cdef Ahead ahead
    cdef int parts
    ahead.next = ahead.end = ahead.done = 0
    ahead.row_bytes = p.n_in * sizeof(floating)
    while True:
        seen = cnet_wait_change(&t.generation, seen, prefetch_row, &ahead)
        if t.task == TASK_PARK:
            return seen
        run_piece(p, index, <floating*>p.work)
        if t.task == TASK_FORWARD and t.op == 0 and index < p.ops[0].pieces:
            ahead.source = t.source     # this batch gathered: on to the next
            ahead.order = t.order
            ahead.next = t.start + t.rows
            ahead.end = ahead.next + t.ahead_rows
            if p.ops[0].by_rows:        # only the rows it will gather
                parts = max(1, row_parts(&p.ops[0], t.ahead_rows))
                ahead.end = ahead.next + t.ahead_rows * min(index + 1, parts) // parts
                ahead.next += t.ahead_rows * min(index, parts) // parts
            ahead.done = 0
        cnet_atomic_add(&t.finished, 1)


cdef int prefetch_row(void* arg) noexcept nogil:
    """Prefetch the next 1 KB (or the rest) of the current row of `ahead`, so that a
    worker looks at the team between pieces of a wide row too; 0 once nothing is left."""
    cdef Ahead* ahead = <Ahead*>arg
    cdef Py_ssize_t stop = min(ahead.done + 1024, ahead.row_bytes)
    if ahead.next >= ahead.end:
        return 0
    cnet_prefetch_bytes(<const char*>ahead.source
                        + ahead.row_bytes * cnet_data_row(ahead.order, ahead.next),
                        ahead.done, stop)
    ahead.done = stop
    if stop == ahead.row_bytes:
        ahead.next += 1
        ahead.done = 0
    return 1


cdef Py_ssize_t gather_batch(Plan* p, const floating* X, const void* y, const int64_t* order,
                             Py_ssize_t start, Py_ssize_t rows) noexcept nogil:
    """Rows order[start:start+rows] of X and their targets into the workspace; -1, or the
    row of X holding a NaN/inf."""
    cdef Py_ssize_t bad = gather_rows(<floating*>p.work, X, order, start, rows, p.n_in)
    if bad < 0:
        gather_targets(p, <floating*>p.work, y, order, start, rows)
    return bad


cdef void gather_targets(Plan* p, floating* work, const void* y, const int64_t* order,
                         Py_ssize_t start, Py_ssize_t rows) noexcept nogil:
    """The targets of rows order[start:start+rows] into the workspace `work` (p.work)."""
    cdef Py_ssize_t r
    if p.loss.class_targets:
        for r in range(rows):
            p.class_target[r] = (<const int64_t*>y)[cnet_data_row(order, start + r)]
    else:
        gather_rows(work + p.target, <const floating*>y, order, start, rows, p.n_out)


cdef Py_ssize_t gather_and_begin(Plan* p, const floating* X, const void* y,
                                 const int64_t* order, Py_ssize_t start, Py_ssize_t rows,
                                 Py_ssize_t ahead_rows, int* done_ops) noexcept nogil:
    """gather_batch. Where the team shares the first layer by outputs, the workers meanwhile
    gather their own copies of the rows and compute their blocks of its outputs, and this
    thread its block once its gather has checked the rows (on a NaN/inf the workers' results
    go unused); shared by rows, each thread gathers and checks its rows and computes their
    outputs, and this one gathers the targets. done_ops[0] is then 1, else 0. The workers
    then prefetch the `ahead_rows` rows after these (by rows: their own rows of them)."""
    cdef Team* t = p.team
    cdef Py_ssize_t bad = -1
    cdef int s
    done_ops[0] = 0
    if t == NULL or p.ops[0].pieces == 1:
        return gather_batch(p, X, y, order, start, rows)
    t.inp = p.work
    t.rows = rows
    t.source = X
    t.order = order
    t.start = start
    t.ahead_rows = ahead_rows
    start_phase(p, TASK_FORWARD, 0)
    if p.ops[0].by_rows:        # each thread gathers and checks its own rows
        gather_targets(p, <floating*>p.work, y, order, start, rows)
        run_piece(p, 0, <floating*>p.work)
        cnet_wait_equal(&t.finished, t.size - 1)
        for s in range(row_parts(&p.ops[0], rows)):
            if t.bad[s] >= 0:
                return t.bad[s]
        done_ops[0] = 1
        return -1
    bad = gather_batch(p, X, y, order, start, rows)
    if bad < 0:
        run_piece(p, 0, <floating*>p.work)
        done_ops[0] = 1
    cnet_wait_equal(&t.finished, t.size - 1)
    return bad


cdef Py_ssize_t train_batches(Plan* p, const floating* X, const void* y, const int64_t* order,
                              Py_ssize_t n_rows, Py_ssize_t first_batch, Py_ssize_t n_batches,
                              long step, double* losses, int64_t* correct, bint stop_on_nan,
                              Py_ssize_t* bad_row) noexcept nogil:
    """Run up to n_batches steps from batch first_batch of the (optionally permuted) data;
    losses[k] gets batch k's loss, correct[k] its correctly classified rows. Returns the
    number of updates made: fewer when a batch holds a NaN/inf, whose row in X is then
    written to bad_row (else bad_row is -1), or, with stop_on_nan, when a batch's loss is
    not finite (that batch's update is not applied)."""
    cdef Py_ssize_t k, start, rows, ahead
    cdef double loss
    cdef int done_ops
    bad_row[0] = -1
    for k in range(n_batches):
        start = (first_batch + k) * p.batch
        rows = min(p.batch, n_rows - start)
        ahead = min(p.batch, n_rows - start - rows) if k + 1 < n_batches else 0
        bad_row[0] = gather_and_begin(p, X, y, order, start, rows, ahead, &done_ops)
        if bad_row[0] >= 0:
            return k
        if p.team == NULL or p.ops[0].pieces == 1:
            # the next batch's rows arrive while this one computes (where the team shares
            # the first layer, the workers fetch them: run_call)
            cnet_prefetch_rows(X, order, start + rows, ahead, p.n_in * sizeof(floating))
        loss = forward_loss(p, <floating*>p.work, rows, done_ops, &correct[k])
        losses[k] = loss
        if stop_on_nan and loss - loss != 0:     # NaN or ±inf
            return k
        if p.max_grad_norm > 0:     # the norm needs every gradient before any update
            backward_pass(p, <floating*>p.work, rows, 0)
            clip_grad_norm_ptr(<floating*>p.grads, p.n_params, p.max_grad_norm)
            update_spans(p, <floating*>p.params, <floating*>p.grads, 0, p.n_spans, step + k)
        else:
            backward_pass(p, <floating*>p.work, rows, step + k)
    return n_batches


cdef Py_ssize_t batch_gradient(Plan* p, const floating* X, const void* y, Py_ssize_t rows,
                               int64_t* correct, double* loss) noexcept nogil:
    """The loss of all rows of X (at most B) into loss[0] and its gradient into the arena's
    gradients, no update; -1 or the row of X holding a NaN/inf."""
    cdef int done_ops
    cdef Py_ssize_t bad = gather_and_begin(p, X, y, NULL, 0, rows, 0, &done_ops)
    if bad < 0:
        loss[0] = forward_loss(p, <floating*>p.work, rows, done_ops, correct)
        backward_pass(p, <floating*>p.work, rows, 0)
    return bad


cdef Py_ssize_t predict_rows(Plan* p, const floating* X, floating* out,
                             Py_ssize_t n_rows) noexcept nogil:
    """Model outputs for every row of X, B rows at a time; -1 or the first non-finite row.
    The rows are read in place (checked, not copied): they are already contiguous."""
    cdef floating* work = <floating*>p.work
    cdef Py_ssize_t start = 0, rows, bad
    cdef const floating* last
    cdef int s
    while start < n_rows:
        rows = min(p.batch, n_rows - start)
        if p.team != NULL:      # each thread checks and predicts its share of the rows
            p.team.inp = X + start * p.n_in
            p.team.rows = rows
            run_phase(p, TASK_PREDICT, 0, work)
            for s in range(p.team.size):
                if p.team.bad[s] >= 0:
                    return start + p.team.bad[s]
        else:
            bad = gather_rows(<floating*>NULL, X, NULL, start, rows, p.n_in)
            if bad >= 0:
                return bad
            forward_pass(p, X + start * p.n_in, rows, 0, 0)
        last = work + p.ops[p.n_ops - 1].output
        memcpy(out + start * p.n_out, last, rows * p.n_out * sizeof(floating))
        start += rows
    return -1


def op_spans(param_ranges, groups):
    """The optimizer groups' arena spans cut at the ops' parameters, in op order:
    [(op index, offset, length, group)], so each op's parameters can be updated right after
    its backward. param_ranges: [(op index, offset, size)] of every model parameter."""
    spans = []
    for g, (_, group_spans) in enumerate(groups):
        for offset, length in group_spans:
            covered = 0
            for i, start, size in param_ranges:
                lo, hi = max(offset, start), min(offset + length, start + size)
                if lo < hi:
                    spans.append((i, lo, hi - lo, g))
                    covered += hi - lo
            if covered != length:
                raise ValueError(f"optimizer span ({offset}, {length}) holds arena entries "
                                 "that are not parameters of the model's layers")
    spans.sort()
    merged = []     # adjacent pieces of one op and one group become one loop
    last = None     # (this module compiles with wraparound=False: no merged[-1])
    for i, offset, length, g in spans:
        if last is not None and last[0] == i and last[3] == g and last[1] + last[2] == offset:
            last[2] += length
        else:
            last = [i, offset, length, g]
            merged.append(last)
    return [tuple(m) for m in merged]


cdef object room(object array, Py_ssize_t n, object dtype):
    """`array` if it holds n elements, else a new array that does: a runner's team buffers
    grow to the largest call's needs and are kept."""
    return array if array is not None and array.size >= n else np.empty(n, dtype)


cdef size_t address(object array):
    return 0 if array is None else <size_t>array.ctypes.data


# Compiled calls in flight (counted under the GIL), and whether the interpreter is exiting.
# A daemon thread can be inside a call when the main thread exits; the C library's exit then
# runs the BLAS's destructor under the thread's products (a segfault). So at exit no new
# call starts (SystemExit, which ends a thread silently), and those in flight, each about
# 0.25 s at most in training, are waited for.
cdef long calls_in_flight = 0
cdef bint exiting = False


def _finish_calls_at_exit(timeout=5.0):
    global exiting
    exiting = True
    deadline = time.monotonic() + timeout
    while calls_in_flight and time.monotonic() < deadline:
        time.sleep(0.001)      # lets the threads in flight return and meet SystemExit


atexit.register(_finish_calls_at_exit)


cdef int call_begins() except -1:
    global calls_in_flight
    if exiting:
        raise SystemExit
    calls_in_flight += 1
    return 0


cdef void call_ends() noexcept:
    global calls_in_flight
    calls_in_flight -= 1


cdef class StepRunner:
    """A compiled plan of a Sequential for batches of up to `batch_size` rows.

    With a loss and an optimizer it trains (`train_batches`); without, it only predicts.
    Arguments are validated by the caller (cnet.trainer): this class trusts them.
    """
    cdef Plan plan
    cdef bint is_double
    cdef object keep    # the arrays the plan points into
    cdef object keep_layers
    cdef object optimizer
    cdef object param_ranges    # [(op index, arena offset, size)] of every parameter
    cdef object max_work        # multiply-adds of the largest product of a full batch
    cdef Team team
    cdef Worker* workers        # room for `capacity` workers, n_workers of them running
    cdef cnet_thread* threads
    cdef int capacity
    cdef int n_workers
    cdef object copies          # the workers' copies of the batch
    cdef object partials        # the workers' partial gradients of ops shared by rows
    cdef readonly int team_size  # threads of the last call (1: the calling thread alone)

    def __cinit__(self):
        self.plan.ops = NULL
        self.plan.spans = NULL
        self.plan.configs = NULL
        self.plan.team = NULL
        self.workers = NULL
        self.threads = NULL
        self.team.bad = NULL
        self.capacity = 0
        self.n_workers = 0

    def __init__(self, model, Py_ssize_t batch_size, loss=None, optimizer=None,
                 double max_grad_norm=0.0):
        cdef Op* op
        dtype = model.dtype
        self.is_double = dtype == np.float64
        layers = model.layers
        self.plan.n_ops = len(layers)
        self.plan.ops = <Op*>malloc(len(layers) * sizeof(Op))
        self.plan.batch = batch_size
        self.plan.n_params = model.flat_data.size
        self.plan.max_grad_norm = max_grad_norm
        self.plan.n_in = model.in_features
        self.plan.n_out = model.out_features
        params = dict(model.named_parameters())
        self.param_ranges = [(int(name.split(".")[0]), p.offset, p.size)
                             for name, p in params.items()]
        buffers = model._buffers
        offset = batch_size * model.in_features    # the gathered batch comes first
        width = model.in_features
        max_width = width
        kinds = {"dense": OP_DENSE, "activation": OP_ACTIVATION, "dropout": OP_DROPOUT,
                 "batchnorm": OP_BATCHNORM}
        for i, layer in enumerate(layers):
            op = &self.plan.ops[i]
            weight = params.get(f"{i}.weight")
            bias = params.get(f"{i}.bias")
            op.kind = kinds[layer.op]
            op.activation = layer.kind if op.kind == OP_ACTIVATION else 0
            op.slope = getattr(layer, "negative_slope", 0.0)
            op.n_in = width
            width = layer.output_width(width)
            op.n_out = width
            op.first_span = op.n_spans = 0
            op.pieces = 1
            # Not the first layer: there every thread gathers the whole batch, which a split
            # by rows would waste (a narrow first layer is left to the BLAS's threads, or to
            # the calling thread when the team shares another layer).
            op.by_input = op.kind == OP_DENSE and i > 0 and op.n_out < 32
            # A batch of at least twice the outputs: each thread reading its rows and the
            # whole weight beats reading the whole batch and its block of the weight, even
            # with the partial weight gradients to add (bench/PROFILE.md).
            op.by_rows = (op.kind == OP_DENSE and not op.by_input
                          and batch_size >= 2 * op.n_out)
            op.weight = weight.offset if weight is not None else -1
            op.bias = bias.offset if bias is not None else -1
            op.output = offset
            offset += batch_size * width
            op.saved = offset
            op.p = getattr(layer, "p", 0.0)
            op.rng = <uint64_t*>address(getattr(layer, "rng_state", None))
            op.eps = getattr(layer, "eps", 0.0)
            momentum = getattr(layer, "momentum", 0.0)
            op.momentum = -1.0 if momentum is None else momentum
            op.running_mean = <void*>address(buffers.get(f"{i}.running_mean"))
            op.running_var = <void*>address(buffers.get(f"{i}.running_var"))
            op.num_batches_tracked = <int64_t*>address(getattr(layer, "num_batches_tracked",
                                                               None))
            if op.kind == OP_DROPOUT:
                offset += batch_size * width                  # the mask
            elif op.kind == OP_BATCHNORM:
                offset += batch_size * width + 4 * width      # xhat, mean, invstd, 2 sums
            max_width = max(max_width, width)
        self.max_work = max([batch_size * self.plan.ops[i].n_in * self.plan.ops[i].n_out
                             for i in range(self.plan.n_ops)
                             if self.plan.ops[i].kind == OP_DENSE], default=0)
        self.keep_layers = [getattr(l, name) for l in layers
                            for name in ("rng_state", "num_batches_tracked") if hasattr(l, name)]
        self.plan.training = loss is not None
        self.plan.grad_a = offset
        self.plan.grad_b = offset + batch_size * max_width
        self.plan.target = offset + 2 * batch_size * max_width if loss is not None else offset
        work = np.zeros(self.plan.target + batch_size * model.out_features, dtype)
        class_target = np.zeros(batch_size, np.int64)
        self.keep = [model.flat_data, model.flat_grad, model.flat_buffers, work, class_target]
        self.plan.params = <void*>address(model.flat_data)
        self.plan.grads = <void*>address(model.flat_grad)
        self.plan.work = <void*>address(work)
        self.plan.class_target = <int64_t*>address(class_target)
        self.plan.state[0] = self.plan.state[1] = self.plan.state[2] = NULL
        if loss is not None:
            self.keep += fill_loss_config(&self.plan.loss, loss, dtype)
        self.optimizer = optimizer
        if optimizer is not None:
            self._set_optimizer(optimizer)

    def _set_optimizer(self, optimizer):
        for i, state in enumerate(optimizer.state.values()):
            self.keep.append(state)
            self.plan.state[i] = <void*>address(state)
        groups = optimizer.kernel_groups()
        spans = op_spans(self.param_ranges, groups)
        self.plan.spans = <Span*>malloc(len(spans) * sizeof(Span))
        self.plan.n_spans = len(spans)
        for i, (op_index, offset, length, g) in enumerate(spans):
            self.plan.spans[i].offset = offset
            self.plan.spans[i].length = length
            self.plan.spans[i].group = g
            if self.plan.ops[op_index].n_spans == 0:
                self.plan.ops[op_index].first_span = i
            self.plan.ops[op_index].n_spans += 1
        self.plan.configs = <OptimConfig*>malloc(len(groups) * sizeof(OptimConfig))
        self.refresh_optimizer()

    def refresh_optimizer(self):
        """Re-read the optimizer's hyper-parameters (a scheduler or the user may change lr)."""
        for g, (config, _) in enumerate(self.optimizer.kernel_groups()):
            fill_optim_config(&self.plan.configs[g], config)

    cdef int prepare_team(self, bint* alone, bint predicting=False) except -1:
        """This call's team of set_num_threads threads (by default as many as the BLAS may
        use). Training: every Dense op whose product is large enough to be threaded
        (cnet.set_threaded_min_work) is shared, at most one thread per 16 output features
        (input features, for an op shared by input feature).
        Predicting: each thread takes its share of the rows (at least 16) through every
        layer, if the products of a batch are large enough and no BatchNorm writes
        statistics that the threads would share. Returns the team's size (1: no team: the
        BLAS threads the large products itself, unless `alone`, which is also set where
        set_num_threads asks for one thread)."""
        cdef int i, size = 1
        cdef int threads = (1 if alone[0] else team_threads if team_threads > 0
                            else blas_threads())
        cdef long long work = 0
        cdef bint row_independent = True
        cdef Op* op
        alone[0] = alone[0] or team_threads == 1
        if not CNET_HAS_TEAM:
            threads = 1
        for i in range(self.plan.n_ops):
            op = &self.plan.ops[i]
            op.pieces = 1 if predicting else self.pieces(op, threads)
            size = max(size, op.pieces)
            row_independent = row_independent and op.kind != OP_BATCHNORM
            if op.kind == OP_DENSE:
                work += self.plan.batch * op.n_in * op.n_out
        if (predicting and threads > 1 and row_independent
                and work >= get_threaded_min_work()):
            size = max(1, min(threads, <int>(self.plan.batch // 16)))
        if size > 1 and not self.start_workers(size - 1):
            size = 1
            for i in range(self.plan.n_ops):
                self.plan.ops[i].pieces = 1
        self.team_size = size
        if size == 1:
            return 1
        dtype = np.float64 if self.is_double else np.float32
        op = &self.plan.ops[0]
        copies = (size - 1) * self.plan.batch * self.plan.n_in
        self.copies = room(self.copies, copies if op.pieces > 1 and not op.by_rows else 0,
                           dtype)
        partials = 0
        for i in range(self.plan.n_ops):
            op = &self.plan.ops[i]
            if op.by_rows:
                partials = max(partials, (op.pieces - 1) * partial_size(op))
        self.partials = room(self.partials, partials, dtype)
        self.team.copies = <void*>address(self.copies)
        self.team.partials = <void*>address(self.partials)
        self.team.size = size
        self.team.flush = flush_denormal
        return size

    cdef int pieces(self, Op* op, int threads) noexcept:
        """Threads sharing op in training: a Dense op whose product has at least
        threaded_min_work multiply-adds, one thread per 16 outputs at most (per 16 inputs
        for an op shared by input feature)."""
        if (threads > 1 and op.kind == OP_DENSE
                and self.plan.batch * op.n_in * op.n_out >= get_threaded_min_work()):
            return max(1, min(threads, (op.n_in if op.by_input else op.n_out) // 16))
        return 1

    def shared_layers(self):
        """{layer index: (how, threads)} of the Dense layers the team shared in the last
        training call; how is "outputs", "inputs" or "rows"."""
        cdef int i
        cdef Op* op
        shared = {}
        for i in range(self.plan.n_ops):
            op = &self.plan.ops[i]
            if op.pieces > 1:
                how = "rows" if op.by_rows else "inputs" if op.by_input else "outputs"
                shared[i] = (how, op.pieces)
        return shared

    def threaded(self):
        """Whether training calls (without one_thread) may run on more than one thread: the
        team shares a layer, or the BLAS threads a product of a layer the team leaves alone
        (what the thread autotune compares against one thread)."""
        cdef int i, threads = (1 if team_threads == 1 or not CNET_HAS_TEAM
                               else team_threads if team_threads > 0 else blas_threads())
        for i in range(self.plan.n_ops):
            if self.pieces(&self.plan.ops[i], threads) > 1:
                return True
        return team_threads != 1 and _blas.threaded_products(self.max_work)

    cdef bint start_workers(self, int n) except -1:
        """n workers, waiting for calls: those of earlier calls if there are n of them
        (started by this process), else new ones. False if a thread could not be started."""
        cdef int k
        if self.n_workers == n and cnet_park_owned(&self.team.park):
            return True
        self.stop_workers()
        if self.capacity < n:
            free(self.workers)
            free(self.threads)
            free(self.team.bad)
            self.workers = <Worker*>malloc(n * sizeof(Worker))
            self.threads = <cnet_thread*>malloc(n * sizeof(cnet_thread))
            self.team.bad = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
            if self.workers == NULL or self.threads == NULL or self.team.bad == NULL:
                self.capacity = 0
                raise MemoryError()
            self.capacity = n
        self.team.generation = self.team.finished = 0
        cnet_park_init(&self.team.park)
        for k in range(n):
            self.workers[k].plan = &self.plan
            self.workers[k].team = &self.team
            self.workers[k].index = k + 1
            self.workers[k].is_double = self.is_double
            if cnet_thread_start(&self.threads[k], worker_main, &self.workers[k]) != 0:
                self.stop_workers()
                return False
            self.n_workers = k + 1
        return True

    cdef void stop_workers(self) noexcept:
        """Let the workers exit and join them. In a forked child, whose copy of this object
        names threads of its parent, only forget them."""
        cdef int k
        if self.n_workers > 0 and cnet_park_owned(&self.team.park):
            with nogil:
                cnet_park_wake(&self.team.park, True)
                for k in range(self.n_workers):
                    cnet_thread_join(self.threads[k])
                cnet_park_destroy(&self.team.park)
        self.n_workers = 0

    def train_batches(self, X, y, order, Py_ssize_t first_batch, Py_ssize_t n_batches,
                      double[::1] losses, int64_t[::1] correct, bint stop_on_nan=True,
                      bint one_thread=False):
        """Train on batches first_batch .. first_batch + n_batches - 1 of X[order] (order may
        be None for the natural order), writing each batch's loss and, for classification,
        its number of correct predictions. Returns (updates made, -1 or the row of X holding
        the NaN/inf that stopped the run); with stop_on_nan, a non-finite loss stops the run
        before that batch's update. one_thread: every product on the calling thread."""
        cdef const void* X_ = <void*>address(X)
        cdef const void* y_ = <void*>address(y)
        cdef const int64_t* order_ = <int64_t*>address(order)
        cdef Py_ssize_t n_rows = X.shape[0], done, bad
        cdef long step = self.optimizer.step_count + 1
        cdef uint64_t mode
        cdef double* losses_ = &losses[0]       # taken here: nothing may raise below
        cdef int64_t* correct_ = &correct[0]
        self.refresh_optimizer()
        cdef int size = self.prepare_team(&one_thread)
        call_begins()
        with nogil:
            mode = self.begin(size, one_thread)
            if self.is_double:
                done = train_batches[double](&self.plan, <const double*>X_, y_, order_, n_rows,
                                             first_batch, n_batches, step, losses_,
                                             correct_, stop_on_nan, &bad)
            else:
                done = train_batches[float](&self.plan, <const float*>X_, y_, order_, n_rows,
                                            first_batch, n_batches, step, losses_,
                                            correct_, stop_on_nan, &bad)
            self.end(size, one_thread, mode)
        call_ends()
        self.optimizer.step_count += done
        return done, bad

    def loss_and_grad(self, X, y, int64_t[::1] correct):
        """Loss over all rows of (X, y) (at most batch_size rows) with its gradient written
        into the model's flat_grad; no update. Returns (loss, -1 or a non-finite row)."""
        cdef const void* X_ = <void*>address(X)
        cdef const void* y_ = <void*>address(y)
        cdef Py_ssize_t rows = X.shape[0], bad
        cdef double loss = 0
        cdef uint64_t mode
        cdef int64_t* correct_ = &correct[0]    # taken here: nothing may raise below
        cdef bint alone = False
        cdef int size = self.prepare_team(&alone)
        call_begins()
        with nogil:
            mode = self.begin(size, alone)
            if self.is_double:
                bad = batch_gradient[double](&self.plan, <const double*>X_, y_, rows,
                                             correct_, &loss)
            else:
                bad = batch_gradient[float](&self.plan, <const float*>X_, y_, rows,
                                            correct_, &loss)
            self.end(size, alone, mode)
        call_ends()
        return loss, bad

    def predict(self, X, out):
        """Write the model's output for every row of X into out; -1 or a non-finite row."""
        cdef const void* X_ = <void*>address(X)
        cdef void* out_ = <void*>address(out)
        cdef Py_ssize_t n_rows = X.shape[0], bad
        cdef uint64_t mode
        cdef bint alone = False
        cdef int size = self.prepare_team(&alone, True)
        call_begins()
        with nogil:
            mode = self.begin(size, alone)
            if self.is_double:
                bad = predict_rows[double](&self.plan, <const double*>X_, <double*>out_, n_rows)
            else:
                bad = predict_rows[float](&self.plan, <const float*>X_, <float*>out_, n_rows)
            self.end(size, alone, mode)
        call_ends()
        return bad

    cdef uint64_t begin(self, int size, bint alone) noexcept nogil:
        """Set this thread's denormal mode and wake the team prepared for this call; while
        it or `alone` holds, every BLAS product runs on the thread that calls it. Returns
        the floating-point mode to give back to `end`."""
        cdef uint64_t mode = cnet_fp_flush_begin(flush_denormal)
        if alone or size > 1:
            one_thread_begin()
        if size > 1:
            self.plan.team = &self.team
            cnet_park_wake(&self.team.park, False)
        return mode

    cdef void end(self, int size, bint alone, uint64_t mode) noexcept nogil:
        """Send the workers back to wait for the next call, wait until they are, and restore
        the calling thread's floating-point mode."""
        if size > 1:
            start_phase(&self.plan, TASK_PARK, 0)
            cnet_wait_equal(&self.team.finished, size - 1)
            self.plan.team = NULL
        if alone or size > 1:
            one_thread_end()
        cnet_fp_flush_end(mode)

    def __dealloc__(self):
        self.stop_workers()
        free(self.workers)
        free(self.threads)
        free(self.team.bad)
        free(self.plan.ops)
        free(self.plan.spans)
        free(self.plan.configs)
