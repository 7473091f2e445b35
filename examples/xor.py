"""XOR: the classic problem a single layer cannot solve and a 2-4-1 network can.

    python examples/xor.py
"""
import numpy as np

import cnet
from cnet import Dense, MSELoss, Sequential, Sigmoid, Tanh, Trainer

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([[0], [1], [1], [0]], dtype=np.float32)


def main(epochs=500, seed=0, verbose=True):
    model = Sequential(Dense(2, 4), Tanh(), Dense(4, 1), Sigmoid(), seed=seed)
    trainer = Trainer(model, MSELoss(), cnet.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    history = trainer.fit(X, Y, epochs=epochs, batch_size=None, verbose=0)   # full batch
    outputs = trainer.predict(X)
    accuracy = float(np.mean((outputs > 0.5) == (Y > 0.5)))
    if verbose:
        for x, out in zip(X, outputs):
            print(f"{x.astype(int)} -> {out[0]:.3f}")
        print(f"loss {history.history['loss'][0]:.4f} -> {history.history['loss'][-1]:.4f}, "
              f"accuracy {accuracy:.0%}")
    return {"accuracy": accuracy, "loss": history.history["loss"]}


if __name__ == "__main__":
    main()
