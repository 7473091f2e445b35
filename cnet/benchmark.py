"""A quick, in-process comparison of cnet with the pure-NumPy reference (cnet bench).

Each configuration trains one epoch of the same network from the same weights with cnet's
Trainer and with cnet.reference.ReferenceMLP (Adam, float32, shuffled mini-batches), and
predicts with both; the runs alternate and the best of a few is kept, so the ratio is
measured under the same conditions. The full suite with PyTorch and the GEMM floor is
in bench/ (pytest-benchmark).
"""
import time

import numpy as np

CONFIGS = {   # name: (layer sizes, batch size); "digits" uses the bundled data
    "tiny (64-32-10, batch 16, digits)": ((64, 32, 10), 16),
    "mnist (784-128-64-10, batch 64)": ((784, 128, 64, 10), 64),
}


def _model(sizes, seed=0):
    import cnet
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [cnet.Dense(a, b), cnet.ReLU()]
    return cnet.Sequential(*layers[:-1], seed=seed)


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def quick_ratios(samples=8192, repeats=3):
    """[(configuration, cnet / reference throughput, cnet samples/s)] for training and
    prediction."""
    import cnet
    from cnet.reference import ReferenceMLP

    rng = np.random.default_rng(0)
    results = []
    for name, (sizes, batch) in CONFIGS.items():
        if sizes[0] == 64:
            X, y = cnet.data.load_digits()
            X /= 16
        else:
            X = rng.random((samples, sizes[0]), dtype=np.float32)
            y = rng.integers(0, sizes[-1], samples)
        model = _model(sizes)
        reference = ReferenceMLP(model)
        trainer = cnet.Trainer(model, cnet.CrossEntropyLoss(), cnet.optim.Adam(model.parameters()))
        fit = lambda: trainer.fit(X, y, epochs=1, batch_size=batch, verbose=0)   # noqa: E731
        fit()   # compile the plan once, as a training run would
        ours = _best(fit, repeats)
        theirs = _best(lambda: reference.fit_epoch(X, y, batch), repeats)
        results.append((f"train {name}", theirs / ours, len(X) / ours))
    ours = _best(lambda: trainer.predict(X), repeats)
    theirs = _best(lambda: reference.predict(X), repeats)
    results.append((f"predict {name}", theirs / ours, len(X) / ours))
    return results
