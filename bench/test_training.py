"""End-to-end: one training epoch (float32, Adam lr=1e-3, shuffled mini-batches) and
inference, cnet against the same network in ordinary NumPy, PyTorch CPU eager and the
GEMM floor, side by side in one group per configuration.

extra_info["samples"] is the number of rows one round processes: report.py divides it by
the median round time for samples/s. extra_info["cpu_s"] is the median CPU time (user +
sys, all threads) of one round, extra_info["cpu_s_rounds"] that of each timed round (for
report.py --stat min).
"""
import math
import os
import time

import numpy as np
import pytest

from cnet import _blas
from cnet.reference import ReferenceMLP

from bench_common import (CONFIGS, LR, PAUSE_S, make_model, make_trainer, run_rounds,
                          settle, torch_model)

IMPLS = ["cnet", "reference", "pytorch", "pytorch_fused", "gemm_floor"]
MIN_TIMED_S = 0.3       # the shortest timed stretch of a round-robin round (tiny's epochs)


def _params(groups_of):
    return [pytest.param(config, impl, id=f"{config}-{impl}",
                         marks=pytest.mark.benchmark(group=groups_of(config)))
            for config in CONFIGS for impl in IMPLS]


# --- one training epoch per implementation ------------------------------------------------

def cnet_epoch(model, X, y, batch):
    trainer = make_trainer(model)

    def epoch(round_index):
        history = trainer.fit(X, y, epochs=1, batch_size=batch, seed=round_index, verbose=0)
        return history.history["loss"][0]
    return epoch


def reference_epoch(model, X, y, batch):
    ref = ReferenceMLP(model, lr=LR)

    def epoch(round_index):
        return ref.fit_epoch(X, y, batch, seed=round_index)
    return epoch


def pytorch_epoch(model, X, y, batch, fused=False):
    import torch
    import torch.nn.functional as F
    net = torch_model(model)
    try:
        opt = torch.optim.Adam(net.parameters(), lr=LR, fused=fused or None)
    except (RuntimeError, TypeError, ValueError) as exc:   # fused Adam needs torch >= 2.4 on CPU
        pytest.skip(f"torch.optim.Adam(fused=True): {exc}")
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n = len(X)

    def epoch(round_index):
        order = torch.from_numpy(np.random.default_rng(round_index).permutation(n))
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss = F.cross_entropy(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        return float(total) / n
    return epoch


def gemm_floor_epoch(model, X, y, batch):
    """Only the matrix products of every step of one epoch, through cnet's own BLAS wrapper
    on preallocated arrays: per Dense layer l, forward Z = A Wᵀ, dW = dZᵀ A, and dA = dZ W
    for every layer but the first. No gather, bias, activation, loss or optimizer."""
    widths = [layer.in_features for layer in model.layers if hasattr(layer, "in_features")]
    widths.append(model.out_features)
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal((o, i)) * 0.05).astype(np.float32)
               for i, o in zip(widths, widths[1:])]
    dweights = [np.empty_like(w) for w in weights]

    def step_calls(rows):
        acts = [rng.random((rows, w), dtype=np.float32) for w in widths]   # A_0 .. A_L
        dacts = [np.empty((rows, w), np.float32) for w in widths]
        dz = [rng.standard_normal((rows, w)).astype(np.float32) * 0.01 for w in widths]
        calls = []
        for l, w in enumerate(weights):
            calls.append((acts[l + 1], acts[l], w, False, True))           # Z = A Wᵀ
        for l in range(len(weights) - 1, -1, -1):
            calls.append((dweights[l], dz[l + 1], acts[l], True, False))   # dW = dZᵀ A
            if l > 0:
                calls.append((dacts[l], dz[l + 1], weights[l], False, False))  # dA = dZ W
        return calls

    n = len(X)
    n_full, last = divmod(n, batch)
    full_calls = step_calls(batch)
    last_calls = step_calls(last) if last else []
    matmul = _blas.matmul

    def epoch(round_index):
        for _ in range(n_full):
            for args in full_calls:
                matmul(*args)
        for args in last_calls:
            matmul(*args)
        return float(dweights[0][0, 0])
    epoch.calls_per_epoch = n_full * len(full_calls) + len(last_calls)
    return epoch


def call_overhead_s(calls=2000, repeats=20):
    """Seconds per cnet._blas.matmul call from Python on empty arrays: the part of the GEMM
    floor that is Python, not BLAS (the fastest of many short runs)."""
    out, a, b = (np.empty((0, 4), np.float32), np.empty((0, 3), np.float32),
                 np.empty((4, 3), np.float32))
    matmul = _blas.matmul
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            matmul(out, a, b, False, True)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def interleaved(fns, rounds, warmers=None):
    """Run every fn in each round, the order rotating from round to round, so that drift in
    the machine's load falls on all of them alike. cnet (scipy's OpenBLAS), the reference
    (NumPy's own OpenBLAS) and PyTorch (its OpenMP pool) keep worker threads spinning for a
    while after their calls, which on 2 cores slowed the next library's first epoch 10-100×
    here, and a pool that went to sleep wakes slowly; a training loop runs epoch after epoch
    of one library. So where `warmers` is given, each fn's turn starts with warmers[name]
    called untimed for PAUSE_S seconds (one call was too short where a call is short: after
    a single 0.5 ms epoch, cnet measured 15.2-15.7× the reference on tiny, against
    17.1-17.3× after this warm-up and 17× in its own benchmark), then fn runs timed for at
    least MIN_TIMED_S, and its figure is the mean per call. A warmer that trains works on
    its own copy of the model, so the timed model trains only in the timed stretches, not
    also through each library's PAUSE_S of warm-up (about 900 epochs a round for cnet's
    tiny, 55 for the reference's). Returns {name: [wall seconds per call]},
    {name: [CPU seconds per call]} and {name: last result}."""
    names = list(fns)
    wall, cpu, result = {n: [] for n in names}, {n: [] for n in names}, {}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            while warmers is not None:
                warmers[name](0)
                if time.perf_counter() - start >= PAUSE_S:
                    break
            calls, c0, t0 = 0, time.process_time(), time.perf_counter()
            while True:
                result[name] = fns[name](r + 1)
                calls += 1
                if warmers is None or time.perf_counter() - t0 >= MIN_TIMED_S:
                    break
            wall[name].append((time.perf_counter() - t0) / calls)
            cpu[name].append((time.process_time() - c0) / calls)
    return wall, cpu, result


EPOCHS = {"cnet": cnet_epoch, "reference": reference_epoch, "pytorch": pytorch_epoch,
          "pytorch_fused": lambda *a: pytorch_epoch(*a, fused=True),
          "gemm_floor": gemm_floor_epoch}


@pytest.mark.parametrize("config, impl", _params(lambda c: f"train {c}"))
def test_train_epoch(benchmark, settings, datasets, config, impl):
    spec = CONFIGS[config]
    if impl.startswith("pytorch"):
        pytest.importorskip("torch")
    X, y = datasets(spec["data"])
    model = make_model(spec["widths"], seed=0)
    start = model.flat_data.copy()
    epoch = EPOCHS[impl](model, X, y, spec["batch"])
    extra = {"kind": "train", "config": config, "impl": impl, "samples": len(X),
             "batch": spec["batch"], "steps": math.ceil(len(X) / spec["batch"]),
             "widths": list(spec["widths"])}
    if impl == "gemm_floor":
        extra["gemm_calls"] = epoch.calls_per_epoch
        extra["call_overhead_s"] = call_overhead_s()
    if impl.startswith("pytorch"):
        import torch
        extra["torch_threads"] = torch.get_num_threads()
    settle(benchmark)
    rounds = settings.rounds if settings.disabled else max(settings.rounds,
                                                           spec.get("min_rounds", 0))
    result = run_rounds(benchmark, epoch, rounds, extra)
    assert math.isfinite(result)
    if impl == "cnet":
        assert not np.array_equal(model.flat_data, start)   # it trained
        assert np.isfinite(model.flat_data).all()
    if impl in ("cnet", "reference", "pytorch", "pytorch_fused"):
        assert 0 < result < 2 * math.log(10) + 1   # a cross-entropy over 10 classes, not diverged


@pytest.mark.parametrize("config", [
    pytest.param(c, marks=pytest.mark.benchmark(group=f"train {c} interleaved"))
    for c in CONFIGS])
def test_train_interleaved(benchmark, settings, datasets, config):
    """Every implementation's epoch, round-robin: a cross-check of the ratios of the
    benchmarks above, in which drift in the machine's load cancels."""
    spec = CONFIGS[config]
    X, y = datasets(spec["data"])
    epochs, warmers, models = {}, {}, {}
    for impl in IMPLS:
        if impl.startswith("pytorch") and not _has_torch():
            continue
        models[impl] = make_model(spec["widths"], seed=0)
        try:
            epochs[impl] = EPOCHS[impl](models[impl], X, y, spec["batch"])
        except pytest.skip.Exception:
            continue
        warmers[impl] = EPOCHS[impl](make_model(spec["widths"], seed=0), X, y, spec["batch"])
    rounds = settings.interleaved_rounds
    wall, cpu, result = benchmark.pedantic(
        lambda: interleaved(epochs, rounds, None if settings.disabled else warmers),
        rounds=1, iterations=1)
    benchmark.extra_info.update({
        "kind": "train_interleaved", "config": config, "samples": len(X),
        "batch": spec["batch"], "widths": list(spec["widths"]), "rounds": rounds,
        "warm_s": PAUSE_S, "min_timed_s": MIN_TIMED_S,
        "wall_s": wall, "cpu_s": cpu, "loadavg_after": os.getloadavg()[0]})
    if "gemm_floor" in epochs:
        benchmark.extra_info["gemm_calls"] = epochs["gemm_floor"].calls_per_epoch
        benchmark.extra_info["call_overhead_s"] = call_overhead_s()
    for impl in set(epochs) - {"gemm_floor"}:
        assert 0 < result[impl] < 2 * math.log(10) + 1, impl
    assert np.isfinite(models["cnet"].flat_data).all()


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.benchmark(group="predict mnist interleaved")
def test_predict_interleaved(benchmark, settings, inference_data):
    """cnet's, the reference's and PyTorch's predict, round-robin (see test_train_interleaved)."""
    X = inference_data
    model = make_model(CONFIGS["mnist"]["widths"], seed=0)
    fns = {"cnet": _predictor("cnet", model, X), "reference": _predictor("reference", model, X)}
    if _has_torch():
        fns["pytorch"] = _predictor("pytorch", model, X)
    rounds = 1 if settings.disabled else 15
    calls = {k: (lambda r, f=f: f()) for k, f in fns.items()}    # predicting changes nothing
    wall, cpu, labels = benchmark.pedantic(
        lambda: interleaved(calls, rounds, None if settings.disabled else calls),
        rounds=1, iterations=1)
    benchmark.extra_info.update({"kind": "predict_interleaved", "config": "mnist",
                                 "samples": len(X), "rounds": rounds,
                                 "warm_s": PAUSE_S, "min_timed_s": MIN_TIMED_S, "wall_s": wall,
                                 "cpu_s": cpu, "loadavg_after": os.getloadavg()[0]})
    for impl, got in labels.items():
        assert np.mean(got == labels["reference"]) > 0.999, impl


# --- inference ------------------------------------------------------------------------------

PREDICT_IMPLS = ["cnet", "reference", "pytorch", "gemm_floor"]


@pytest.mark.benchmark(group="predict mnist")
@pytest.mark.parametrize("impl", PREDICT_IMPLS)
def test_predict(benchmark, inference_data, impl):
    X = inference_data
    model = make_model(CONFIGS["mnist"]["widths"], seed=0)
    if impl == "pytorch":
        pytest.importorskip("torch")
    fn = predict_floor(model, X) if impl == "gemm_floor" else _predictor(impl, model, X)
    benchmark.extra_info.update({"kind": "predict", "config": "mnist", "impl": impl,
                                 "samples": len(X), "flops": predict_flops(model, len(X)),
                                 "loadavg_after": os.getloadavg()[0]})
    fn()
    settle(benchmark)
    got = benchmark(fn)
    if impl == "gemm_floor":    # its first product is the first layer's, bias aside
        first = model.layers[0]
        np.testing.assert_allclose(got, X @ first.weight.data.T, rtol=1e-4, atol=1e-4)
        return
    expected = ReferenceMLP(model).predict(X)
    assert got.shape == (len(X),)
    assert np.mean(got == expected) > 0.999   # the same model (float32 ties aside)


def predict_flops(model, rows):
    """Floating-point operations in predicting `rows` rows: a multiply and an add for each
    weight of each Dense layer, per row (bias, activations and argmax aside)."""
    return 2 * rows * sum(layer.weight.data.size for layer in model.layers
                          if hasattr(layer, "weight"))


def predict_floor(model, X):
    """Only the matrix products of predicting X, one per Dense layer over all the rows
    (Z = A Wᵀ, as the reference computes them), through cnet's BLAS wrapper on preallocated
    arrays with the BLAS's own threads: no bias, activation, argmax or chunking. About what
    a predict with this BLAS needs at least. Returns the first product."""
    weights = [layer.weight.data for layer in model.layers if hasattr(layer, "weight")]
    acts = [X] + [np.empty((len(X), w.shape[0]), np.float32) for w in weights]
    matmul = _blas.matmul

    def products():
        for a, w, out in zip(acts, weights, acts[1:]):
            matmul(out, a, w, False, True)
        return acts[1]
    return products


def _predictor(impl, model, X):
    """A function returning the predicted labels of X by `impl` for the network `model`."""
    if impl == "cnet":
        trainer = make_trainer(model)
        return lambda: trainer.predict(X)
    if impl == "reference":
        ref = ReferenceMLP(model)
        return lambda: ref.predict(X)
    import torch
    net = torch_model(model)
    Xt = torch.from_numpy(X)

    def predict():
        with torch.no_grad():
            return net(Xt).argmax(dim=1).numpy()
    return predict
