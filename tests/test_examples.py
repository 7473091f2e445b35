"""Every example runs and shows what it claims."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_reaches_full_accuracy(capsys):
    result = example("xor").main()
    assert result["accuracy"] == 1.0
    assert result["loss"][-1] < 0.01 < result["loss"][0]
    assert "accuracy 100%" in capsys.readouterr().out


def test_house_prices_fit_the_three_houses():
    result = example("house_prices").main(verbose=False)
    assert result["max_error"] < 0.01


def test_learning_rates_small_barely_moves_large_diverges_right_learns():
    curves = example("learning_rates").main(verbose=False)
    small, right, large = curves["too small"], curves["about right"], curves["too large"]
    assert small[-1] > 0.98 * small[0]                   # barely moves
    assert right[-1] < 0.5 * right[0]                    # learns
    with np.errstate(invalid="ignore"):
        assert not large[-1] < 2 * large[0]              # blows up (or turns NaN)


def test_momentum_and_adam_beat_plain_sgd_on_the_digits():
    curves = example("optimizers_digits").main(verbose=False)
    final = {name: logs["loss"][-1] for name, logs in curves.items()}
    assert final["SGD + momentum"] < final["SGD"] and final["Adam"] < final["SGD"]


def test_optimizer_comparison_draws_its_plot(tmp_path):
    pytest.importorskip("matplotlib")   # in the [test] extra; optional for users
    plot = tmp_path / "curves.png"
    curves = example("optimizers_digits").main(epochs=3, verbose=False, plot=str(plot))
    assert all(len(logs["loss"]) == 3 for logs in curves.values())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 1000


def test_two_moons_need_a_hidden_layer_and_the_boundary_is_drawn(tmp_path):
    pytest.importorskip("matplotlib")   # in the [test] extra; optional for users
    plot = tmp_path / "moons.png"
    accuracy = example("decision_boundary").main(verbose=False, plot=str(plot))
    assert accuracy["mlp"] > 0.97 and accuracy["linear"] < 0.92
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
