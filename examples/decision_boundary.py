"""Two moons: a curved decision boundary that a linear model cannot draw and an MLP can.

The two interleaved half-circles are generated here (seeded noise, no download). A
2-16-16-2 tanh network learns them; with --plot FILE.png (matplotlib needed) the learned
class regions are drawn under the points.

    python examples/decision_boundary.py [--plot moons.png]
"""
import argparse

import numpy as np

import cnet
from cnet import CrossEntropyLoss, Sequential, Tanh, Trainer


def two_moons(n=400, noise=0.15, seed=0):
    """n points on two interleaved half-circles (labels 0 and 1), with Gaussian noise."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label == 0, np.cos(angle), 1 - np.cos(angle))
    y = np.where(label == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.column_stack([x, y]) + rng.normal(0, noise, (n, 2))
    return points.astype(np.float32), label


def main(epochs=200, seed=0, verbose=True, plot=None):
    X, y = two_moons(seed=seed)
    results = {}
    for name, hidden in (("linear", []), ("mlp", [16, 16])):
        model = Sequential.mlp([2, *hidden, 2], activation=Tanh, seed=seed)
        trainer = Trainer(model, CrossEntropyLoss(), cnet.optim.Adam(model.parameters(), lr=0.02))
        trainer.fit(X, y, epochs=epochs, batch_size=32, seed=seed, verbose=0)
        results[name] = (trainer, trainer.evaluate(X, y)["accuracy"])
        if verbose:
            print(f"{name:<7} training accuracy {results[name][1]:.3f}")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        xx, yy = np.meshgrid(np.linspace(-1.6, 2.6, 300), np.linspace(-1.2, 1.7, 200))
        grid = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float32)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, (name, (trainer, accuracy)) in zip(axes, results.items()):
            proba = trainer.predict_proba(grid)[:, 1].reshape(xx.shape)
            ax.contourf(xx, yy, proba, levels=20, cmap="RdBu_r", alpha=0.6)
            ax.contour(xx, yy, proba, levels=[0.5], colors="k", linewidths=1)
            ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", s=10, edgecolors="k",
                       linewidths=0.3)
            ax.set_title(f"{name}: accuracy {accuracy:.2f}")
        fig.savefig(plot, dpi=110, bbox_inches="tight")
    return {name: accuracy for name, (_, accuracy) in results.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="save the decision regions to this PNG file")
    main(plot=parser.parse_args().plot)
