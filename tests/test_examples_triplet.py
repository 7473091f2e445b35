"""examples/triplet_digits.py runs and shows what it claims: after training with
TripletMarginLoss, same-class held-out digits are closer than different-class ones."""
import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "triplet_digits.py"


def load_example():
    spec = importlib.util.spec_from_file_location("triplet_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_class_embeddings_end_up_closer(capsys):
    result = load_example().main(epochs=5)
    same, different = result["after"]
    assert same < different
    # training made the classes better separated than the random network left them
    before_same, before_different = result["before"]
    assert same / different < 0.75 * (before_same / before_different)
    assert result["losses"][-1] < 0.6 * result["losses"][0]
    assert result["nearest_neighbour_accuracy"] > 0.8
    out = capsys.readouterr().out
    assert "same-class embeddings are closer than different-class ones" in out


def test_stacked_branches_equal_three_separate_passes():
    # The example runs anchor, positive and negative through the network as one stacked
    # batch; the gradient must equal three forward/backward passes accumulated in .grad.
    import numpy as np
    from cnet import Dense, ReLU, Sequential, TripletMarginLoss

    rng = np.random.default_rng(0)
    model = Sequential(Dense(6, 5), ReLU(), Dense(5, 3), dtype="float64", seed=0)
    a, p, n = (rng.standard_normal((4, 6)) for _ in range(3))
    loss_fn = TripletMarginLoss(margin=2.0)
    outputs = np.split(model(np.concatenate([a, p, n])), 3)
    stacked_loss = loss_fn(*outputs)
    model.zero_grad()
    model.backward(np.concatenate(loss_fn.backward()))
    stacked = model.flat_grad.copy()

    separate_loss = loss_fn(model(a), model(p), model(n))
    grads = loss_fn.backward()
    model.zero_grad()
    for x, g in zip((a, p, n), grads):
        model(x)                      # redo this branch's forward so its cache is current
        model.backward(g)             # accumulates into .grad
    assert separate_loss == stacked_loss
    np.testing.assert_allclose(model.flat_grad, stacked, rtol=1e-12, atol=1e-14)
