"""Learning rate too small, too large and about right, on the same problem.

Plain gradient descent on the digits (full batch) for a fixed number of epochs:
a tiny rate barely moves the loss, a huge one makes it blow up, a good one gets low.

    python examples/learning_rates.py
"""
import numpy as np

import cnet
from cnet import CrossEntropyLoss, Dense, ReLU, Sequential, Trainer

RATES = {"too small": 1e-4, "about right": 0.5, "too large": 50.0}


def main(epochs=40, seed=0, verbose=True):
    X, y = cnet.data.load_digits()
    X /= 16
    curves = {}
    for label, lr in RATES.items():
        model = Sequential(Dense(64, 32), ReLU(), Dense(32, 10), seed=seed)
        trainer = Trainer(model, CrossEntropyLoss(), cnet.optim.SGD(model.parameters(), lr=lr))
        with np.errstate(all="ignore"):
            history = trainer.fit(X, y, epochs=epochs, batch_size=None, verbose=0)
        curves[label] = history.history["loss"]
        if verbose:
            print(f"lr={lr:<8g} {label:<12} loss {curves[label][0]:8.4f} -> "
                  f"{curves[label][-1]:8.4g}")
    return curves


if __name__ == "__main__":
    main()
