"""Sequential: the arena, parameters, state dicts and the manual forward/backward path."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

import cnet
from cnet import (BatchNorm1d, CrossEntropyLoss, Dense, Dropout, LeakyReLU, MSELoss, ReLU,
                  Sequential, Sigmoid, Softmax, Tanh)
from helpers import check_model_gradients


def mlp(dtype="float64", seed=0):
    return Sequential(Dense(5, 7), Tanh(), Dense(7, 6), LeakyReLU(0.1), Dense(6, 4), Sigmoid(),
                      Dense(4, 3), ReLU(), Dense(3, 3), dtype=dtype, seed=seed)


def test_parameters_are_views_into_one_flat_arena():
    model = mlp()
    params = list(model.parameters())
    assert sum(p.size for p in params) == model.flat_data.size == model.flat_grad.size
    for p in params:
        assert np.shares_memory(p.data, model.flat_data)
        assert np.shares_memory(p.grad, model.flat_grad)
    model.flat_data[:] = np.arange(model.flat_data.size)
    assert model[0].weight.data[0, 1] == 1.0   # (out, in) layout, row-major in the arena


def test_state_dict_keys_shapes_and_round_trip():
    model = mlp()
    state = model.state_dict()
    assert list(state)[:4] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert state["0.weight"].shape == (7, 5)
    other = mlp(seed=1)
    assert not np.array_equal(other.flat_data, model.flat_data)
    other.load_state_dict(state)
    assert np.array_equal(other.flat_data, model.flat_data)


def test_same_seed_same_weights_and_torch_style_init():
    a, b = mlp(seed=3), mlp(seed=3)
    assert np.array_equal(a.flat_data, b.flat_data)
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(a[0].weight.data) <= bound)
    assert a[0].weight.data.std() > bound / 4


def test_backward_matches_finite_differences_for_every_layer():
    model = mlp()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5))
    y = np.array([0, 2, 1, 2])

    def objective():
        return objective.loss_fn(model(x), y)

    objective.loss_fn = CrossEntropyLoss()
    check_model_gradients(model, objective, x)


def test_backward_accumulates_until_zero_grad():
    model = mlp()
    x = np.random.default_rng(2).standard_normal((3, 5))
    loss_fn = MSELoss()
    target = np.zeros((3, 3))
    for _ in range(2):
        loss_fn(model(x), target)
        model.backward(loss_fn.backward())
    twice = model.flat_grad.copy()
    model.zero_grad()
    assert not model.flat_grad.any()
    loss_fn(model(x), target)
    model.backward(loss_fn.backward())
    assert_allclose(twice, 2 * model.flat_grad)


def test_float32_model_computes_in_float32():
    model = mlp("float32")
    out = model(np.ones((2, 5)))
    assert out.dtype == np.float32 and model.flat_data.dtype == np.float32


@pytest.mark.parametrize("x, error, match", [
    (np.ones((3, 4)), ValueError, "expected 5 features, got 4"),
    (np.ones(5), ValueError, "2-D"),
    (np.ones((0, 5)), ValueError, "at least one row"),
    (np.array([[np.nan, 0, 0, 0, 0]]), ValueError, "finite.*row 0"),
    (np.array([[0, 0, 0, 0, np.inf]]), ValueError, "finite"),
    (np.ones((2, 5), np.float16), TypeError, "float16"),
    (np.ones((2, 5), np.complex128), TypeError, "complex128"),
    (np.array([["a"] * 5]), TypeError, "x:"),
])
def test_forward_rejects_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        mlp()(x)


@pytest.mark.parametrize("make, error, match", [
    (lambda: Dense(0, 3), ValueError, "in_features"),
    (lambda: Dense(3, -1), ValueError, "out_features"),
    (lambda: Dense(2.5, 3), TypeError, "in_features"),
    (lambda: Sequential(Dense(3, 4), Dense(5, 2)), ValueError, "5 input features"),
    (lambda: Sequential(Dense(3, 4), dtype="float16"), TypeError, "dtype"),
    (lambda: Sequential(), ValueError, "at least one layer"),
    (lambda: Sequential(Dense(3, 4), "relu"), TypeError, r"layers\[1\]"),
])
def test_bad_construction_is_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_shared_layer_object_is_rejected():
    layer = Dense(3, 3)
    with pytest.raises(ValueError, match="appears twice"):
        Sequential(layer, ReLU(), layer)


@pytest.mark.parametrize("mutate, error, match", [
    (lambda s: s.pop("2.bias"), ValueError, "missing keys.*2.bias"),
    (lambda s: s.update({"9.weight": np.ones(2)}), ValueError, "unexpected keys.*9.weight"),
    (lambda s: s.update({"0.weight": np.ones((5, 7))}), ValueError, r"0.weight.*\(7, 5\)"),
    (lambda s: s.update({"0.bias": np.full(7, np.nan)}), ValueError, "finite"),
    (lambda s: s.update({"0.bias": np.array(["x"] * 7)}), TypeError, "0.bias"),
])
def test_load_state_dict_rejects_bad_state_and_writes_nothing(mutate, error, match):
    model = mlp()
    before = model.flat_data.copy()
    state = mlp(seed=5).state_dict()
    mutate(state)
    with pytest.raises(error, match=match):
        model.load_state_dict(state)
    assert np.array_equal(model.flat_data, before)


def test_step_layer_forward_only():
    model = Sequential(Dense(2, 1), cnet.Step(), seed=0)
    out = model(np.array([[1.0, 2.0], [-3.0, -4.0]]))
    assert set(np.unique(out)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="Step has no gradient"):
        model.backward(np.ones_like(out))


def test_unbound_dense_explains_itself():
    with pytest.raises(ValueError, match="Sequential"):
        Dense(2, 3)(np.ones((1, 2), np.float32))


def test_mlp_builds_dense_layers_with_activation_and_dropout_between():
    model = Sequential.mlp((6, 5, 4, 3), activation=Tanh, dropout=0.25, dtype="float64", seed=1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "Tanh", "Dropout", "Dense", "Tanh", "Dropout", "Dense"]
    assert [(l.in_features, l.out_features) for l in model.layers if isinstance(l, Dense)] \
        == [(6, 5), (5, 4), (4, 3)]
    assert model.layers[2].p == 0.25 and model.dtype == np.float64
    same = Sequential(Dense(6, 5), Tanh(), Dropout(0.25), Dense(5, 4), Tanh(), Dropout(0.25),
                      Dense(4, 3), dtype="float64", seed=1)
    np.testing.assert_array_equal(model.flat_data, same.flat_data)   # same layout and init


def test_mlp_without_activation_and_with_zero_init():
    model = Sequential.mlp([3, 2], activation=None, init="zeros")
    assert [type(layer).__name__ for layer in model.layers] == ["Dense"]
    assert not model.flat_data.any()
    relu = Sequential.mlp([3, 4, 2])
    assert [type(layer).__name__ for layer in relu.layers] == ["Dense", "ReLU", "Dense"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(widths=[3]), ValueError, "widths: expected an input and an output width"),
    (dict(widths=5), TypeError, "widths: expected a sequence"),
    (dict(widths=[3, 0]), ValueError, "out_features"),
    (dict(widths=[3, 2], activation="relu"), TypeError, "activation: expected a cnet layer"),
    (dict(widths=[3, 2], activation=ReLU()), TypeError, "activation: expected a cnet layer"),
    (dict(widths=[3, 4, 2], dropout=1.5), ValueError, "p: expected a probability"),
])
def test_mlp_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Sequential.mlp(**kwargs)


def test_a_layer_of_one_model_cannot_join_another():
    """Its parameters are views of the first model's arena: in a second model, its manual
    forward would follow one model's weights and the Trainer the other's."""
    dense = Dense(4, 2)
    first = Sequential(dense, seed=0)
    with pytest.raises(ValueError, match=r"layers\[1\]: this Dense already belongs to another"):
        Sequential(ReLU(), dense, seed=1)
    assert first[0] is dense
    relu = ReLU()           # a model that fails to build does not claim its layers
    with pytest.raises(ValueError, match="expected 3 input features"):
        Sequential(relu, Dense(4, 2), Dense(3, 2))
    assert Sequential(relu, Dense(4, 2)).layers[0] is relu


@pytest.mark.parametrize("build, error, match", [
    (lambda: Dense(4, 3, init=["he"]), ValueError, "init: expected one of"),
    (lambda: Sequential(Dense(2**32, 2**32)), ValueError, "more than an array can hold"),
    (lambda: LeakyReLU(None), TypeError, "negative_slope"),
    (lambda: LeakyReLU("0.1"), TypeError, "negative_slope"),
    (lambda: LeakyReLU(float("nan")), ValueError, "negative_slope"),
    (lambda: Softmax(dim=True), ValueError, "dim"),
    (lambda: Dropout("0.5"), TypeError, "p: expected a probability"),
    (lambda: Dropout(10**400), ValueError, "p: expected a probability"),
    (lambda: BatchNorm1d(3, eps=float("inf")), ValueError, "eps"),
    (lambda: BatchNorm1d(3, momentum=1.5), ValueError, "momentum"),
    (lambda: Sequential(Dense(2, 2), seed=True), TypeError, "seed"),
])
def test_layer_arguments_of_the_wrong_kind_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_numpy_scalars_are_numbers_for_layer_arguments():
    assert Dropout(np.float32(0.5)).p == 0.5
    norm = BatchNorm1d(3, eps=np.float32(1e-5), momentum=np.float64(0.1))
    assert norm.eps == pytest.approx(1e-5) and norm.momentum == 0.1
    assert LeakyReLU(np.float32(0.25)).negative_slope == 0.25
