"""PyTorch interop: torch.nn.Sequential state dicts and safetensors files load into the
equivalent cnet model and back, with the same predictions (float32 round-off)."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

import cnet
from cnet import (BatchNorm1d, Dense, Dropout, Identity, LeakyReLU, ReLU, Sequential, Sigmoid,
                  Softmax, Step, Tanh, optim)
from cnet import io as cio

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def torch_net(dtype=torch.float32):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.LeakyReLU(0.2),
                        nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(0.3),
                        nn.Linear(12, 8, bias=False), nn.Sigmoid(), nn.Linear(8, 5),
                        nn.Identity(), nn.Softmax(dim=1)).to(dtype)
    with torch.no_grad():           # give the running statistics something to carry
        for _ in range(3):
            net(torch.randn(32, 6, dtype=dtype))
    return net.eval()


def cnet_net(dtype="float32"):
    return Sequential(Dense(6, 16), ReLU(), Dense(16, 12), LeakyReLU(0.2), BatchNorm1d(12),
                      Tanh(), Dropout(0.3), Dense(12, 8, bias=False), Sigmoid(), Dense(8, 5),
                      Identity(), Softmax(dim=1), dtype=dtype, seed=1).eval()


def inputs(dtype=np.float32):
    return np.random.default_rng(2).standard_normal((20, 6)).astype(dtype)


def torch_predict(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_state_dict_loads_into_cnet(dtype):
    net = torch_net(dtype)
    model = cnet_net(str(dtype).split(".")[1])
    model.load_state_dict({k: v.detach().numpy() for k, v in net.state_dict().items()})
    x = inputs(model.dtype)
    assert_allclose(model(x), torch_predict(net, x), **TOL[dtype])
    assert model[4].num_batches_tracked[0] == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cnet_state_dict_loads_into_torch(dtype):
    model = cnet_net(str(dtype).split(".")[1])
    model.train()
    model(inputs(model.dtype))          # running statistics move
    model.eval()
    net = torch_net(dtype)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = inputs(model.dtype)
    assert_allclose(torch_predict(net, x), model(x), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_torch_and_to_torch(dtype):
    net = torch_net(dtype)
    model = cio.from_torch(net)
    assert model.dtype == np.dtype(str(dtype).split(".")[1]) and model.training is False
    assert [type(l) for l in model.layers] == [Dense, ReLU, Dense, LeakyReLU, BatchNorm1d,
                                               Tanh, Dropout, Dense, Sigmoid, Dense, Identity,
                                               Softmax]
    assert model[3].negative_slope == pytest.approx(0.2) and model[6].p == 0.3
    assert model[7].bias is None
    x = inputs(model.dtype)
    assert_allclose(model(x), torch_predict(net, x), **TOL[dtype])
    back = cio.to_torch(model)
    assert back.training is False and next(back.parameters()).dtype == dtype
    assert_allclose(torch_predict(back, x), model(x), **TOL[dtype])
    for key, value in net.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_batchnorm_options_carry_over():
    net = nn.Sequential(nn.BatchNorm1d(4, eps=1e-3, momentum=None, affine=False),
                        nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False))
    model = cio.from_torch(net)
    assert model[0].config() == {"num_features": 4, "eps": 1e-3, "momentum": None,
                                 "affine": False, "track_running_stats": True}
    assert model[2].track_running_stats is False and model.training is True
    x = inputs()[:, :4]
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()    # training mode: batch statistics
    assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
    assert_allclose(model[0].running_var, net[0].running_var.numpy(), rtol=1e-5)
    assert cio.to_torch(model)[0].momentum is None


def test_unsupported_modules_are_type_errors():
    with pytest.raises(TypeError, match="GELU has no cnet equivalent"):
        cio.from_torch(nn.Sequential(nn.Linear(3, 3), nn.GELU()))
    with pytest.raises(TypeError, match="Softmax"):
        cio.from_torch(nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=0)))
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        cio.from_torch(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="float32 or float64"):
        cio.from_torch(nn.Sequential(nn.Linear(3, 3)).half())
    with pytest.raises(TypeError, match="Step has no torch equivalent"):
        cio.to_torch(Sequential(Dense(3, 3), Step()))
    with pytest.raises(TypeError, match="Sequential"):
        cio.to_torch(nn.Sequential())


# --- through safetensors files -----------------------------------------------------------------

def test_torch_safetensors_file_loads_into_cnet(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    net = torch_net()
    st.save_file(net.state_dict(), str(tmp_path / "torch.safetensors"))
    tensors, metadata = cio.read_safetensors(tmp_path / "torch.safetensors")
    model = cnet_net()
    model.load_state_dict(tensors)
    x = inputs()
    assert_allclose(model(x), torch_predict(net, x), **TOL[torch.float32])
    # Not a cnet model file: cnet.load says so instead of guessing an architecture.
    with pytest.raises(ValueError, match="not a cnet model file"):
        cnet.load(tmp_path / "torch.safetensors")


def test_cnet_file_loads_into_torch(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open
    model = cnet_net()
    opt = optim.Adam(model.parameters())
    cnet.save(model, tmp_path / "plain.safetensors")
    cnet.save(model, tmp_path / "ckpt.safetensors", optimizer=opt, extra={"epoch": 1})
    x = inputs()
    for name in ("plain", "ckpt"):
        state = st.load_file(str(tmp_path / f"{name}.safetensors"))
        weights = {k: v for k, v in state.items() if not k.startswith("optimizer.")}
        assert (set(weights) == set(state)) == (name == "plain")
        net = torch_net()
        net.load_state_dict(weights)            # strict: exactly torch's keys and shapes
        assert_allclose(torch_predict(net, x), model(x), **TOL[torch.float32])
    with safe_open(str(tmp_path / "ckpt.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["cnet.format_version"] == cio.FORMAT_VERSION and "cnet.model" in meta


def test_files_written_by_write_safetensors_read_by_the_reference(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(3, np.int64),
               "c": np.zeros((0, 2)), "d": np.array([True, False]),
               "e": np.ones(3, np.float16)}
    cio.write_safetensors(tmp_path / "t.safetensors", tensors, {"k": "v"})
    back = st.load_file(str(tmp_path / "t.safetensors"))
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    st.save_file(tensors, str(tmp_path / "ref.safetensors"), metadata={"k": "v"})
    mine, meta = cio.read_safetensors(tmp_path / "ref.safetensors")
    assert meta == {"k": "v"}
    for k, v in tensors.items():
        assert mine[k].dtype == v.dtype and np.array_equal(mine[k], v)
