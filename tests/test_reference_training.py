"""ReferenceMLP (the benchmarks' NumPy baseline) does the same computation as Trainer.fit."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnet import (CrossEntropyLoss, Dense, LeakyReLU, ReLU, Sequential, Sigmoid, Tanh, Trainer,
                  optim)
from cnet.data import load_digits
from cnet.reference import ReferenceMLP


def digits(n=None):
    X, y = load_digits()
    return X[:n] / 16, y[:n]


def mlp(dtype="float64", seed=0, hidden=(32,), act=ReLU):
    return Sequential.mlp((64, *hidden, 10), activation=act, dtype=dtype, seed=seed)


def train_both(model, X, y, batch_size, seed, epochs=1, lr=1e-3):
    ref = ReferenceMLP(model, lr=lr)
    start = model.flat_data.copy()
    history = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=lr)).fit(
        X, y, epochs=epochs, batch_size=batch_size, seed=seed, verbose=0)
    rng = np.random.default_rng(seed)
    ref_losses = [ref.fit_epoch(X, y, batch_size, rng) for _ in range(epochs)]
    return ref, start, history, ref_losses


@pytest.mark.parametrize("act", [ReLU, Tanh, Sigmoid, LeakyReLU])
@pytest.mark.parametrize("batch_size", [16, 50])   # 50: the last batch is shorter
def test_one_epoch_matches_trainer_fit_float64(act, batch_size):
    X, y = digits(400)
    model = mlp(act=act, hidden=(32, 16))
    ref, start, history, ref_losses = train_both(model, X, y, batch_size, seed=3)
    assert ref.step_count == -(-len(X) // batch_size)
    assert not np.allclose(model.flat_data, start)          # training moved the weights
    assert_allclose(ref.flat_data, model.flat_data, rtol=1e-10, atol=1e-12)
    assert ref_losses[0] == pytest.approx(history.history["loss"][0], rel=1e-10)


def test_the_shuffle_follows_trainer_fit_over_epochs():
    X, y = digits(300)
    model = mlp()
    ref, _, history, ref_losses = train_both(model, X, y, 32, seed=5, epochs=3, lr=1e-2)
    assert_allclose(ref.flat_data, model.flat_data, rtol=1e-10, atol=1e-12)
    assert_allclose(ref_losses, history.history["loss"], rtol=1e-10)


def test_a_different_order_gives_different_weights():
    """The parity above is not vacuous: the batch order matters at this tolerance."""
    X, y = digits(300)
    model = mlp()
    ref = ReferenceMLP(model)
    Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters())).fit(
        X, y, batch_size=32, seed=1, verbose=0)
    ref.fit_epoch(X, y, 32, seed=2)
    assert not np.allclose(ref.flat_data, model.flat_data, rtol=1e-6, atol=1e-9)


def test_float32_epoch_is_close_to_trainer_fit():
    X, y = digits()
    model = mlp(dtype="float32")
    ref, _, _, _ = train_both(model, X, y, 16, seed=0)
    assert ref.flat_data.dtype == np.float32
    # Only the order of float32 round-off differs (the loss is summed in float64 by both).
    assert_allclose(ref.flat_data, model.flat_data, rtol=1e-4, atol=1e-6)


def test_starts_from_the_models_weights_and_predicts_like_the_trainer():
    X, y = digits(500)
    model = mlp(hidden=(24, 12), act=Tanh)
    ref = ReferenceMLP(model)
    assert set(ref.state_dict()) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert np.array_equal(ref.state_dict()[key], value)
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters()))
    assert_allclose(ref.forward(X), model(X), rtol=1e-12, atol=1e-12)
    assert np.array_equal(ref.predict(X), trainer.predict(X))
    ref.fit_epoch(X, y, 20, seed=0)
    assert not np.array_equal(ref.flat_data, model.flat_data)   # ref trains its own copy


def test_learns_the_digits():
    X, y = digits()
    ref = ReferenceMLP(mlp(dtype="float32"), lr=1e-2)
    first = ref.fit_epoch(X, y, 32, seed=0)
    for epoch in range(1, 5):
        last = ref.fit_epoch(X, y, 32, seed=epoch)
    assert last < first / 2
    assert (ref.predict(X) == y).mean() > 0.9


def test_rejects_layers_it_does_not_know():
    from cnet import Step
    with pytest.raises(TypeError, match="model\\[1\\]"):
        ReferenceMLP(Sequential(Dense(4, 3), Step(), seed=0))
