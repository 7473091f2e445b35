"""Triplet loss on the digits: learn an 8-number embedding of each 8x8 digit in which images
of the same digit lie close together and images of different digits far apart.

    python examples/triplet_digits.py

Each training example is a triplet: an anchor image, a positive (another image of the same
digit) and a negative (an image of a different digit). TripletMarginLoss pushes
d(anchor, positive) below d(anchor, negative) by at least the margin. No labels are
predicted: the network (64-32-8) only maps images to points, and the example measures, on
held-out digits, the mean distance between embeddings of the same class and of different
classes, before and after training.

How one network serves the three branches (the manual loop). A Sequential keeps one forward
cache per layer, so calling model(anchor), model(positive), model(negative) in turn would
leave only the negative's cache for backward. Instead the three batches are stacked into one
batch of 3B rows, run forward once and split; the loss's three gradients are stacked the
same way and run backward once. Every layer here (Dense, ReLU) treats each row on its own,
so this is exactly three forward passes with shared weights, and the single backward adds
the three branches' weight gradients together, which is what shared weights need. (It
would not be exact with BatchNorm1d in training mode, whose batch statistics mix rows.)
"""
import time

import numpy as np

from cnet import Dense, ReLU, Sequential, TripletMarginLoss
from cnet.data import load_digits, train_test_split
from cnet.metrics import l2_distance
from cnet.optim import Adam


def sample_triplets(rng, labels, by_class):
    """For every row as the anchor: a random other row of its class, a random row of another."""
    positives = np.empty(len(labels), np.int64)
    negatives = np.empty(len(labels), np.int64)
    for i, label in enumerate(labels):
        same = by_class[label]
        pick = same[rng.integers(len(same) - 1)]
        positives[i] = pick if pick != i else same[-1]      # never the anchor itself
        other = rng.integers(len(labels) - len(same))
        negatives[i] = np.flatnonzero(labels != label)[other]
    return positives, negatives


def class_distances(embeddings, labels):
    """Mean Euclidean distance between embeddings of the same class and of different classes
    (over all pairs of distinct rows)."""
    distances = l2_distance(embeddings[:, None, :], embeddings[None, :, :])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(distances[same & off_diagonal].mean()), float(distances[~same].mean())


def nearest_neighbour_accuracy(train_embeddings, train_labels, test_embeddings, test_labels):
    """How often the closest training embedding has the held-out digit's class."""
    distances = l2_distance(test_embeddings[:, None, :], train_embeddings[None, :, :])
    return float(np.mean(train_labels[np.argmin(distances, axis=1)] == test_labels))


def main(epochs=30, batch_size=64, seed=0, verbose=True):
    start = time.perf_counter()
    X, y = load_digits()
    X = (X / 16).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=seed,
                                                        stratify=y)
    by_class = {label: np.flatnonzero(y_train == label) for label in np.unique(y_train)}
    rng = np.random.default_rng(seed)

    model = Sequential(Dense(64, 32), ReLU(), Dense(32, 8), seed=seed)
    loss_fn = TripletMarginLoss(margin=1.0)
    optimizer = Adam(model.parameters(), lr=1e-3)
    before = class_distances(model(X_test), y_test)

    losses = []
    for epoch in range(epochs):
        positives, negatives = sample_triplets(rng, y_train, by_class)
        order = rng.permutation(len(y_train))
        epoch_loss = 0.0
        for first in range(0, len(order), batch_size):
            anchors = order[first:first + batch_size]
            rows = np.concatenate([anchors, positives[anchors], negatives[anchors]])
            embedded = model(X_train[rows])                       # the three branches at once
            anchor, positive, negative = np.split(embedded, 3)
            loss = loss_fn(anchor, positive, negative)
            optimizer.zero_grad()
            model.backward(np.concatenate(loss_fn.backward()))   # their gradients, stacked
            optimizer.step()
            epoch_loss += loss * len(anchors)
        losses.append(epoch_loss / len(order))
        if verbose:
            print(f"epoch {epoch + 1:2d}/{epochs}: triplet loss {losses[-1]:.4f}")

    after = class_distances(model(X_test), y_test)
    accuracy = nearest_neighbour_accuracy(model(X_train), y_train, model(X_test), y_test)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"held-out digits ({len(y_test)}), mean distance between embeddings:")
        print(f"  before training: same class {before[0]:.3f}, different classes {before[1]:.3f}"
              f" (ratio {before[0] / before[1]:.2f})")
        print(f"  after training:  same class {after[0]:.3f}, different classes {after[1]:.3f}"
              f" (ratio {after[0] / after[1]:.2f})")
        verdict = "closer" if after[0] < after[1] else "NOT closer"
        print(f"same-class embeddings are {verdict} than different-class ones; the nearest "
              f"training embedding has the right digit for {accuracy:.1%} of held-out "
              f"images ({seconds:.1f} s)")
    return {"before": before, "after": after, "losses": losses,
            "nearest_neighbour_accuracy": accuracy}


if __name__ == "__main__":
    main()
