"""SGD vs SGD with momentum vs Adam on the digits: the loss curve of each.

Same network, same initial weights (same seed), same mini-batches; only the optimizer
changes. With --plot FILE.png (matplotlib needed) the curves are drawn.

    python examples/optimizers_digits.py [--plot curves.png]
"""
import argparse

import cnet
from cnet import CrossEntropyLoss, Dense, ReLU, Sequential, Trainer

OPTIMIZERS = {
    "SGD": lambda params: cnet.optim.SGD(params, lr=0.01),
    "SGD + momentum": lambda params: cnet.optim.SGD(params, lr=0.01, momentum=0.9),
    "Adam": lambda params: cnet.optim.Adam(params, lr=1e-3),
}


def main(epochs=15, seed=0, verbose=True, plot=None):
    X, y = cnet.data.load_digits()
    X_train, X_test, y_train, y_test = cnet.data.train_test_split(X / 16, y, seed=seed,
                                                                  stratify=y)
    curves = {}
    for name, make in OPTIMIZERS.items():
        model = Sequential(Dense(64, 64), ReLU(), Dense(64, 10), seed=seed)
        trainer = Trainer(model, CrossEntropyLoss(), make(model.parameters()))
        history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=32, seed=seed,
                              validation_data=(X_test, y_test), verbose=0)
        curves[name] = history.history
        if verbose:
            print(f"{name:<15} loss " + " ".join(f"{v:.3f}" for v in history.history["loss"])
                  + f"  test accuracy {history.history['val_accuracy'][-1]:.3f}")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, logs in curves.items():
            ax.plot(range(1, epochs + 1), logs["loss"], label=name)
        ax.set(xlabel="epoch", ylabel="training loss", yscale="log",
               title="Optimizers on the digits (64-64-10 ReLU)")
        ax.legend()
        fig.savefig(plot, dpi=120, bbox_inches="tight")
    return curves


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="save the loss curves to this PNG file")
    main(plot=parser.parse_args().plot)
