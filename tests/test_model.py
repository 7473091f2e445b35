"""Sequential: the arena, parameters, state dicts and the manual forward/backward path."""
import copy
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose

import cnet
from cnet import (BatchNorm1d, CrossEntropyLoss, Dense, Dropout, LeakyReLU, MSELoss, ReLU,
                  Sequential, Sigmoid, Softmax, Step, Tanh, Trainer, optim)
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


def test_assigning_data_or_grad_copies_into_the_arena():
    """torch habits (p.data = w, p.grad = g, p.grad = None) keep .data and .grad views of
    the arena the optimizers and the step runner use: the values are copied in."""
    model = Sequential(Dense(2, 1), dtype="float64", seed=0)
    trainer = Trainer(model, MSELoss(), optim.SGD(model.parameters(), lr=1.0))
    weight, x = model[0].weight, np.ones((1, 2))
    weight.data = [[5.0, 5.0]]
    assert np.shares_memory(weight.data, model.flat_data)
    assert model(x)[0, 0] == trainer.predict(x)[0, 0] == 10.0 + model[0].bias.data[0]
    weight.grad = np.array([[1.0, -1.0]])
    trainer.optimizer.step()
    assert weight.data.tolist() == [[4.0, 6.0]]
    model.backward(np.ones((1, 1)))           # accumulates on the copied gradient
    assert weight.grad.tolist() == [[1.0 + 1.0, -1.0 + 1.0]]
    weight.grad = None                        # torch's set_to_none: backward starts from zero
    assert np.shares_memory(weight.grad, model.flat_grad) and not weight.grad.any()
    model(x)
    model.backward(np.ones((1, 1)))
    assert weight.grad.tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize("attribute, value, error, match", [
    ("data", np.zeros((1, 3)), ValueError, r"0\.weight\.data: expected an array of shape \(1, 2\)"),
    ("grad", np.zeros((200, 100)), ValueError, r"0\.weight\.grad: expected .* shape \(1, 2\)"),
    ("data", [["a", "b"]], TypeError, r"0\.weight\.data: expected float32, float64 or integer"),
    ("requires_grad", False, ValueError, r"0\.weight\.requires_grad: .* lr=0"),
    ("frozen", True, AttributeError, "frozen"),
])
def test_bad_assignments_to_a_parameter_are_refused_and_change_nothing(attribute, value, error,
                                                                      match):
    model = Sequential(Dense(2, 1), seed=0)
    before = model.flat_data.copy(), model.flat_grad.copy()
    with pytest.raises(error, match=match):
        setattr(model[0].weight, attribute, value)
    assert np.array_equal(model.flat_data, before[0]) and np.array_equal(model.flat_grad, before[1])
    assert model[0].weight.requires_grad_(True).requires_grad


def test_a_layer_in_a_model_keeps_its_views_of_the_arenas():
    """Its parameters cannot be rebound (to another model's, say) and a buffer assigned is
    copied into its view: a running mean of the wrong shape was read out of bounds by
    the manual path's kernel."""
    model = Sequential(Dense(3, 8), BatchNorm1d(8), seed=0)
    other = Sequential(Dense(3, 8), seed=1)
    with pytest.raises(AttributeError, match=r"Dense\.weight: .* assign to \.weight\.data"):
        model[0].weight = other[0].weight
    with pytest.raises(ValueError, match=r"BatchNorm1d\.running_mean: expected .* shape \(8,\)"):
        model[1].running_mean = np.zeros(2)
    model[1].running_mean = np.full(8, 3.0)
    assert np.shares_memory(model[1].running_mean, model.flat_buffers)
    assert (model.state_dict()["1.running_mean"] == 3).all()
    model[0].weight = model[0].weight               # the same object: allowed, no change
    layer = Dense(2, 2)
    layer.weight = "anything before it joins a model"
    assert layer.weight == "anything before it joins a model"


def test_a_parameter_group_with_lr_0_freezes_its_parameters_in_fit():
    """What the requires_grad error suggests: Adam (with weight decay) leaves lr=0 unchanged."""
    model = Sequential(Dense(4, 8), ReLU(), Dense(8, 3), seed=0)
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    opt = optim.Adam([{"params": first, "lr": 0.0}, {"params": rest}], lr=0.01,
                     weight_decay=0.1)
    frozen, trained = model[0].weight.data.copy(), model[2].weight.data.copy()
    rng = np.random.default_rng(0)
    Trainer(model, CrossEntropyLoss(), opt).fit(rng.standard_normal((32, 4)),
                                                rng.integers(0, 3, 32), epochs=2, verbose=0)
    assert np.array_equal(model[0].weight.data, frozen)
    assert not np.array_equal(model[2].weight.data, trained)


def test_load_state_dict_reports_keys_as_torch():
    model = Sequential(Dense(2, 3), BatchNorm1d(3), seed=0)
    state = model.state_dict()
    assert repr(model.load_state_dict(state)) == "<All keys matched successfully>"
    model[1].num_batches_tracked[...] = 7
    del state["1.num_batches_tracked"]              # torch's older state dicts have none
    assert model.load_state_dict(state) == ([], [])
    assert model[1].num_batches_tracked == 7
    del state["0.bias"]
    state["head.weight"] = np.zeros(3)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert (missing, unexpected) == (["0.bias"], ["head.weight"])
    torch = pytest.importorskip("torch")
    t_model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    t_keys = t_model.load_state_dict({k: torch.tensor(v) for k, v in state.items()},
                                     strict=False)
    assert (t_keys.missing_keys, t_keys.unexpected_keys) == (missing, unexpected)


def test_zero_grad_takes_torchs_set_to_none():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    for zero_grad in (model.zero_grad, opt.zero_grad):
        model.flat_grad[:] = 1
        zero_grad(set_to_none=True)
        assert not model.flat_grad.any()


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
    (lambda: Sequential(Dense(3, 4), dtype="fp32"), TypeError, "dtype: expected 'float32'"),
    (lambda: Sequential(Dense(3, 4), dtype=np.int32), TypeError, "dtype: expected 'float32'"),
    (lambda: Sequential(), ValueError, "at least one layer"),
    (lambda: Sequential(Dense(3, 4), "relu"), TypeError, r"layers\[1\]"),
])
def test_bad_construction_is_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_dtype_none_is_the_default_and_torch_dtypes_are_understood():
    assert Sequential(Dense(2, 2), dtype=None).dtype == np.float32      # as torch's dtype=None
    torch = pytest.importorskip("torch")
    assert Sequential(Dense(2, 2), dtype=torch.float64).dtype == np.float64
    assert Sequential(Dense(2, 2), dtype=torch.float32).dtype == np.float32
    with pytest.raises(TypeError, match=r"dtype: expected 'float32' or 'float64', got torch\.int32"):
        Sequential(Dense(2, 2), dtype=torch.int32)


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


# ---- copies and edits of a model (found in review) --------------------------------------------

@pytest.mark.parametrize("copy_of", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
def test_a_copied_model_keeps_its_parameters_and_buffers_views_of_its_own_arenas(copy_of):
    model = Sequential(Dense(4, 6), BatchNorm1d(6), ReLU(), Dense(6, 3), seed=0)
    model(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))  # stats move
    clone = copy_of(model)
    for name, p in clone.named_parameters():
        assert np.shares_memory(p.data, clone.flat_data), name
        assert np.shares_memory(p.grad, clone.flat_grad), name
        assert not np.shares_memory(p.data, model.flat_data), name
    for layer in (clone[1],):
        assert np.shares_memory(layer.running_mean, clone.flat_buffers)
        assert layer.running_mean is clone._buffers["1.running_mean"]
    for key, value in model.state_dict().items():
        assert np.array_equal(clone.state_dict()[key], value), key
    clone.flat_data[:] = 0          # what an optimizer step or the step runner writes
    clone.flat_buffers[:] = 7
    assert not clone[0].weight.data.any() and (clone[1].running_var == 7).all()
    assert all(not v.any() for k, v in clone.state_dict().items() if k.endswith(("weight", "bias")))
    assert model[0].weight.data.any()       # the original is untouched


def test_a_deep_copied_model_trains_saves_and_predicts_the_same_weights(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential(Dense(4, 8), ReLU(), Dense(8, 2), seed=0)
    clone = copy.deepcopy(model)
    trainer = Trainer(clone, CrossEntropyLoss(), optim.SGD(clone.parameters(), lr=0.5))
    trainer.fit(X, y, epochs=5, verbose=0)
    outputs = trainer.predict_proba(X)
    assert_allclose(cnet.layers.Softmax()(clone(X)), outputs, rtol=1e-5, atol=1e-6)
    cnet.save(clone, tmp_path / "clone.safetensors")
    back = cnet.load(tmp_path / "clone.safetensors")
    assert np.array_equal(back.flat_data, clone.flat_data)
    assert not np.array_equal(clone.flat_data, model.flat_data)


def test_a_deep_copied_trainer_trains_its_own_model_and_optimizer():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential(Dense(4, 8), ReLU(), Dense(8, 2), dtype="float64", seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.05))
    trainer.fit(X, y, epochs=2, verbose=0)          # runners exist now
    before = model.flat_data.copy()
    for clone in (copy.deepcopy(trainer), pickle.loads(pickle.dumps(trainer))):
        assert clone.optimizer.flat_data is clone.model.flat_data
        clone.fit(X, y, epochs=3, verbose=0, seed=0)
        assert np.array_equal(model.flat_data, before)              # the original's untouched
        assert not np.array_equal(clone.model.flat_data, before)
    trainer.fit(X, y, epochs=3, verbose=0, seed=0)
    assert np.array_equal(trainer.model.flat_data, clone.model.flat_data)  # same run


@pytest.mark.parametrize("edit", [
    lambda layers: layers.append(Dense(3, 2)),
    lambda layers: layers.insert(0, ReLU()),
    lambda layers: layers.pop(0),
    lambda layers: layers.__setitem__(2, Dense(6, 3)),
    lambda layers: layers.__setitem__(0, Sequential(Dense(5, 6), seed=0)[0]),
    lambda layers: layers.clear(),
], ids=["append", "insert", "remove", "replace", "foreign", "clear"])
def test_editing_model_layers_after_construction_is_refused_before_compiled_code(edit):
    X = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    y = np.arange(16) % 3
    model = Sequential(Dense(5, 6), ReLU(), Dense(6, 3), seed=0)
    trainer = Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters()))
    trainer.fit(X, y, epochs=1, verbose=0)
    edit(model.layers)       # heap corruption in the step runner before the check
    for call in (lambda: trainer.fit(X, y, epochs=1, verbose=0), lambda: trainer.predict(X),
                 lambda: trainer.evaluate(X, y), lambda: cnet.save(model, "never-written")):
        with pytest.raises(ValueError, match="model.layers was changed"):
            call()


def test_swapping_an_activation_in_model_layers_still_works():
    X = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    model = Sequential(Dense(5, 6), Sigmoid(), Dense(6, 3), Sigmoid(), seed=0)
    trainer = Trainer(model, MSELoss(), optim.SGD(model.parameters()))
    trainer.fit(X, np.zeros((16, 3), np.float32), epochs=1, verbose=0)
    model.layers[3] = Step()
    assert set(np.unique(trainer.predict(X))) <= {0.0, 1.0}


def test_a_shallow_copy_shares_the_model_and_leaves_the_original_intact():
    model = Sequential(Dense(4, 6), BatchNorm1d(6), ReLU(), Dense(6, 3), seed=0)
    same = copy.copy(model)
    assert same.flat_data is model.flat_data and same[1] is model[1]
    assert same._calls is model._calls      # a second name for one model: one lock
    X = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    Trainer(model, CrossEntropyLoss(), optim.SGD(model.parameters())).fit(
        X, np.arange(16) % 3, epochs=1, verbose=0)        # model._check_layers() passes
    assert np.shares_memory(model[1].running_mean, model.flat_buffers)


@pytest.mark.parametrize("mode", ["False", 0, None])
def test_train_mode_must_be_a_bool(mode):
    model = Sequential(Dense(2, 2), Dropout(0.5), seed=0)
    with pytest.raises(TypeError, match="mode: expected True or False"):
        model.train(mode)
    assert model.training and model[1].training
    assert model.train(np.bool_(False)) is model and not model[1].training


def test_a_layer_resized_after_the_model_ran_is_refused_before_compiled_code():
    model = Sequential(Dense(4, 3), ReLU(), Dense(3, 2), seed=0)
    trainer = Trainer(model, MSELoss(), optim.SGD(model.parameters(), lr=0.1))
    X = np.ones((8, 4), np.float32)
    trainer.predict(X)                  # the layers were checked and found as built
    model[0].out_features = model[2].in_features = 3000
    with pytest.raises(ValueError, match="model.layers was changed"):
        trainer.predict(X)
