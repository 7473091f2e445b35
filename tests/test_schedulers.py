"""Learning-rate schedules: torch's lr sequences, hand-computed values, save/resume, checks."""
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnet import Dense, MSELoss, Sequential, Trainer, optim, schedulers

LRS = (0.1, 0.03)     # two parameter groups with their own lr


def make_optimizer(kind="SGD", lrs=LRS):
    model = Sequential(Dense(3, 2), Dense(2, 1), seed=0)
    params = list(model.parameters())
    return getattr(optim, kind)([{"params": params[:2], "lr": lrs[0]},
                                 {"params": params[2:], "lr": lrs[1]}])


SCHEDULES = [
    ("StepLR", dict(step_size=3), ()),
    ("StepLR", dict(step_size=2, gamma=0.5), ()),
    ("ExponentialLR", dict(gamma=0.9), ()),
    ("CosineAnnealingLR", dict(T_max=10), ()),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01), ()),
]
# (kwargs, metrics fed to step(), one per epoch)
PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.9, 0.9,
                   0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
PLATEAUS = [
    dict(patience=2),
    dict(mode="max", patience=1, factor=0.5),
    dict(patience=0, threshold=0.1, threshold_mode="abs", cooldown=2, min_lr=[0.01, 0.001]),
    dict(patience=1, factor=0.5, threshold=0.0, min_lr=0.02, eps=1e-3),
]


@pytest.mark.parametrize("name, kwargs, _", SCHEDULES)
def test_lr_sequence_matches_torch(name, kwargs, _):
    torch = pytest.importorskip("torch")
    opt = make_optimizer()
    t_opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": LRS[0]},
                             {"params": [torch.zeros(1)], "lr": LRS[1]}])
    sched = getattr(schedulers, name)(opt, **kwargs)
    t_sched = getattr(torch.optim.lr_scheduler, name)(t_opt, **kwargs)
    assert sched.get_last_lr() == t_sched.get_last_lr()
    for epoch in range(30):
        t_opt.step()
        sched.step()
        t_sched.step()
        assert sched.get_last_lr() == t_sched.get_last_lr(), f"epoch {epoch + 1}"
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in t_opt.param_groups]
    # the state_dict is torch's (its step count included), less torch's own bookkeeping flags
    t_state = {key: value for key, value in t_sched.state_dict().items()
               if key not in ("verbose", "_is_initial", "_get_lr_called_within_step")}
    assert sched.state_dict() == t_state


@pytest.mark.parametrize("kwargs", PLATEAUS)
def test_plateau_sequence_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    opt = make_optimizer()
    t_opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": LRS[0]},
                             {"params": [torch.zeros(1)], "lr": LRS[1]}])
    sched = schedulers.ReduceLROnPlateau(opt, **kwargs)
    t_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **kwargs)
    metrics = PLATEAU_METRICS if kwargs.get("mode") != "max" else [-m for m in PLATEAU_METRICS]
    for epoch, metric in enumerate(metrics):
        sched.step(metric)
        t_sched.step(metric)
        assert sched.get_last_lr() == t_sched.get_last_lr(), f"epoch {epoch + 1}"
        assert sched.num_bad_epochs == t_sched.num_bad_epochs
        assert sched.best == t_sched.best


def lrs_over(sched, epochs):
    out = [sched.get_last_lr()[0]]
    for _ in range(epochs):
        sched.step()
        out.append(sched.get_last_lr()[0])
    return out


def test_step_lr_hand_computed():
    sched = schedulers.StepLR(make_optimizer(lrs=(1.0, 1.0)), step_size=3, gamma=0.5)
    assert lrs_over(sched, 7) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_exponential_lr_hand_computed():
    sched = schedulers.ExponentialLR(make_optimizer(lrs=(2.0, 1.0)), gamma=0.5)
    assert lrs_over(sched, 4) == [2, 1, 0.5, 0.25, 0.125]


def test_cosine_follows_the_closed_form_and_comes_back_up():
    T, eta_min, base = 8, 0.01, 0.1
    sched = schedulers.CosineAnnealingLR(make_optimizer(lrs=(base, base)), T_max=T,
                                         eta_min=eta_min)
    got = lrs_over(sched, 2 * T)
    closed = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / T)) / 2
              for e in range(2 * T + 1)]
    assert_allclose(got, closed, rtol=1e-12, atol=1e-15)
    assert got[T] == pytest.approx(eta_min) and got[2 * T] == pytest.approx(base)


def test_plateau_hand_computed():
    # patience 1: reduced after the 2nd epoch in a row without improvement.
    opt = make_optimizer(lrs=(1.0, 1.0))
    sched = schedulers.ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1, min_lr=0.2)
    lrs = []
    for metric in [5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3]:
        sched.step(metric)
        lrs.append(opt.lr)
    # Reductions at epochs 4, 7, 10 and 13 (two bad epochs each; the epoch after a reduction
    # is cooldown); min_lr stops the third at 0.2, and the fourth changes nothing.
    assert lrs == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert sched.best == 3 and sched.num_bad_epochs == 0


@pytest.mark.parametrize("name, kwargs, _", SCHEDULES)
def test_resume_gives_the_same_sequence(name, kwargs, _):
    opt = make_optimizer()
    sched = getattr(schedulers, name)(opt, **kwargs)
    for _ in range(4):
        sched.step()
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    expected = lrs_over(sched, 8)
    # torch's order: optimizer and scheduler built, then both states loaded.
    opt2 = make_optimizer(lrs=(5.0, 5.0))
    sched2 = getattr(schedulers, name)(opt2, **kwargs)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    assert lrs_over(sched2, 8) == expected


def test_plateau_resume_gives_the_same_sequence():
    opt = make_optimizer()
    sched = schedulers.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    for metric in PLATEAU_METRICS[:6]:
        sched.step(metric)
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    expected = []
    for metric in PLATEAU_METRICS[6:]:
        sched.step(metric)
        expected.append(sched.get_last_lr())
    opt2 = make_optimizer()
    sched2 = schedulers.ReduceLROnPlateau(opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    got = []
    for metric in PLATEAU_METRICS[6:]:
        sched2.step(metric)
        got.append(sched2.get_last_lr())
    assert got == expected


def test_resuming_with_last_epoch():
    opt = make_optimizer()
    sched = schedulers.ExponentialLR(opt, gamma=0.5)
    sched.step()
    opt2 = make_optimizer()
    opt2.load_state_dict(opt.state_dict())           # brings "initial_lr"
    sched2 = schedulers.ExponentialLR(opt2, gamma=0.5, last_epoch=1)
    assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="initial_lr"):
        schedulers.StepLR(make_optimizer(), step_size=2, last_epoch=3)


def test_schedule_reaches_the_step_runner():
    # Trainer.fit re-reads the lr at each call: lr 0 after the first epoch freezes the model.
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
    model = Sequential(Dense(3, 1), seed=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = schedulers.StepLR(opt, step_size=1, gamma=0.0)
    trainer = Trainer(model, MSELoss(), opt)
    trainer.fit(X, y, epochs=1, verbose=0)
    sched.step()
    before = model.flat_data.copy()
    trainer.fit(X, y, epochs=2, verbose=0)
    assert np.array_equal(model.flat_data, before)


@pytest.mark.parametrize("make, match, error", [
    (lambda o: schedulers.StepLR(o, step_size=0), "step_size", ValueError),
    (lambda o: schedulers.StepLR(o, step_size=2.5), "step_size", TypeError),
    (lambda o: schedulers.StepLR(o, step_size=2, gamma=-1), "gamma", ValueError),
    (lambda o: schedulers.ExponentialLR(o, gamma=float("nan")), "gamma", ValueError),
    (lambda o: schedulers.ExponentialLR(o, gamma="0.5"), "gamma", TypeError),
    (lambda o: schedulers.CosineAnnealingLR(o, T_max=0), "T_max", ValueError),
    (lambda o: schedulers.CosineAnnealingLR(o, T_max=5, eta_min=-1), "eta_min", ValueError),
    (lambda o: schedulers.StepLR(o, 2, last_epoch=-2), "last_epoch", ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o, mode="minimum"), "mode", ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o, factor=1.0), "factor", ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o, patience=-1), "patience", ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode",
     ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o, cooldown=1.5), "cooldown", TypeError),
    (lambda o: schedulers.ReduceLROnPlateau(o, min_lr=[0.1]), "min_lr", ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o, eps=-1e-8), "eps", ValueError),
    (lambda o: schedulers.ReduceLROnPlateau(o).step("low"), "metrics", TypeError),
    (lambda o: schedulers.StepLR("sgd", 2), "optimizer", TypeError),
])
def test_bad_arguments_are_named(make, match, error):
    with pytest.raises(error, match=match):
        make(make_optimizer())


def test_bad_state_dict_is_named_and_nothing_written():
    sched = schedulers.StepLR(make_optimizer(), step_size=2)
    good = sched.state_dict()
    for key, value, error in [("gamma", "x", TypeError), ("last_epoch", -3, ValueError),
                              ("base_lrs", [0.1], ValueError)]:
        with pytest.raises(error, match=key):
            sched.load_state_dict({**good, key: value})
    with pytest.raises(ValueError, match="step_size"):
        sched.load_state_dict({k: v for k, v in good.items() if k != "step_size"})
    with pytest.raises(ValueError, match="extra"):
        sched.load_state_dict({**good, "last_epoch": 9, "extra": 1})
    assert sched.state_dict() == good


def test_step_lr_resumed_at_a_boundary_decays_when_built_as_torch():
    """torch's StepLR keeps the lrs only at epoch 0: built with last_epoch=5 (lr 0.1 * 0.3 at
    epochs 3-5), its first step is epoch 6 and decays: the closed form 0.1 * 0.3**(e // 3)."""
    opt = make_optimizer()
    for group in opt.param_groups:
        group["initial_lr"], group["lr"] = 0.1, 0.1 * 0.3
    sched = schedulers.StepLR(opt, step_size=3, gamma=0.3, last_epoch=5)
    lrs = [opt.lr]
    for _ in range(4):
        sched.step()
        lrs.append(opt.lr)
    assert_allclose(lrs, [0.1 * 0.3 ** (e // 3) for e in range(6, 11)], rtol=1e-15)


def test_plateau_skips_a_reduction_of_exactly_eps():
    """torch reduces an lr only when the change exceeds eps: with lr 1, factor 0.5 and
    eps 0.5 the change is exactly eps, so nothing changes (binary fractions: exact)."""
    opt = make_optimizer(lrs=(1.0, 1.0))
    sched = schedulers.ReduceLROnPlateau(opt, patience=0, factor=0.5, eps=0.5)
    sched.step(1.0)
    sched.step(2.0)
    assert sched.get_last_lr() == [1.0, 1.0]
    sched = schedulers.ReduceLROnPlateau(make_optimizer(lrs=(1.0, 1.0)), patience=0,
                                         factor=0.5, eps=0.25)
    sched.step(1.0)
    sched.step(2.0)
    assert sched.get_last_lr() == [0.5, 0.5]
    torch = pytest.importorskip("torch")
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    t_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, patience=0, factor=0.5,
                                                         eps=0.5)
    t_sched.step(1.0)
    t_sched.step(2.0)
    assert t_sched.get_last_lr() == [1.0]
