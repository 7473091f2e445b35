"""House prices: linear regression on the three houses of the course example.

    size (tens of m²)  rooms  distance to centre (km)  ->  price (hundreds of k)
    32                 3      0.3                      ->  6
    33                 3      0.5                      ->  7
    36                 4      0.5                      ->  8.5

Inputs are standardised (each feature to mean 0, standard deviation 1) so one learning
rate suits every feature; a Dense(3, 1) layer is linear regression.

    python examples/house_prices.py
"""
import numpy as np

import cnet
from cnet import Dense, MSELoss, Sequential, Trainer

X = np.array([[32, 3, 0.3], [33, 3, 0.5], [36, 4, 0.5]])
y = np.array([6.0, 7.0, 8.5])


def main(epochs=300, seed=0, verbose=True):
    mean, std = X.mean(axis=0), X.std(axis=0)
    model = Sequential(Dense(3, 1), dtype="float64", seed=seed)
    trainer = Trainer(model, MSELoss(), cnet.optim.Adam(model.parameters(), lr=0.1))
    history = trainer.fit((X - mean) / std, y, epochs=epochs, batch_size=None, verbose=0)
    predicted = trainer.predict((X - mean) / std)[:, 0]
    error = float(np.max(np.abs(predicted - y)))
    if verbose:
        for row, target, guess in zip(X, y, predicted):
            print(f"{row} -> {guess:.3f} (true {target})")
        print(f"final MSE {history.history['loss'][-1]:.2e}, largest error {error:.3f}")
    return {"max_error": error, "loss": history.history["loss"]}


if __name__ == "__main__":
    main()
