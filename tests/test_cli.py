"""The command line: train/save/plot, predict, evaluate, bench, info, errors and --help."""
import subprocess
import sys

import numpy as np
import pytest

import cnet
from cnet import cli


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    assert cli.main(["train", "--epochs", "3", "--hidden", "32", "--quiet",
                     "--save", str(path)]) == 0
    return path


def digits_csv(path, rows, labels=True):
    X, y = cnet.data.load_digits()
    table = np.column_stack([X[:rows], y[:rows]]) if labels else X[:rows]
    np.savetxt(path, table, delimiter=",", fmt="%g")
    return X[:rows], y[:rows]


def test_train_saves_a_model_that_loads_with_its_preprocessing(saved_model):
    checkpoint = cnet.load(saved_model, with_optimizer=True)
    assert checkpoint.model.in_features == 64 and checkpoint.model.out_features == 10
    assert checkpoint.extra["task"] == "classification"
    assert checkpoint.extra["preprocessing"] == {"scale": 1 / 16}
    assert type(checkpoint.optimizer).__name__ == "Adam"


def test_predict_writes_one_label_per_row(saved_model, tmp_path, capsys):
    X, y = digits_csv(tmp_path / "x.csv", 40, labels=False)
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", str(saved_model), str(tmp_path / "x.csv"), "-o", str(out)]) == 0
    predicted = np.loadtxt(out, dtype=np.int64)
    model = cnet.load(saved_model).eval()
    assert np.array_equal(predicted, model(X / 16).argmax(axis=1))
    assert np.mean(predicted == y) > 0.8
    assert cli.main(["predict", str(saved_model), str(tmp_path / "x.csv"), "--proba"]) == 0
    proba = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",")
    assert proba.shape == (40, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_evaluate_prints_accuracy_and_a_confusion_matrix(saved_model, tmp_path, capsys):
    X, y = digits_csv(tmp_path / "xy.csv", 60)
    assert cli.main(["evaluate", str(saved_model), str(tmp_path / "xy.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"all rows of {tmp_path / 'xy.csv'}: 60\n")
    accuracy = float(out.split("accuracy: ")[1].split()[0])
    model = cnet.load(saved_model).eval()
    assert accuracy == pytest.approx(np.mean(model(X / 16).argmax(axis=1) == y), abs=1e-4)
    matrix_rows = [line for line in out.splitlines()[3:] if line.strip()]
    assert len(matrix_rows) == 11     # header + 10 classes
    assert sum(int(v) for row in matrix_rows[1:] for v in row.split()[1:]) == 60


def test_train_on_a_csv_regression_and_plot(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ [1.5, -2.0, 0.5] + 3.0
    np.savetxt(tmp_path / "reg.csv", np.column_stack([X, y]), delimiter=",",
               header="a,b,c,target", comments="")
    plot = tmp_path / "curves.png"
    assert cli.main(["train", "--data", str(tmp_path / "reg.csv"), "--label-column", "target",
                     "--epochs", "30", "--quiet", "--plot", str(plot),
                     "--save", str(tmp_path / "reg.safetensors")]) == 0
    out = capsys.readouterr().out
    assert float(out.split("test loss: ")[1].split()[0]) < 0.5
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert cnet.load(tmp_path / "reg.safetensors", with_optimizer=True).extra["task"] == "regression"


def test_large_integer_labels_are_not_classes_unless_told(tmp_path, capsys):
    """Integer targets such as prices or ids would make a classifier with max + 1 outputs."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.repeat([0, 10**12, 2 * 10**12], 20)
    np.savetxt(tmp_path / "ids.csv", np.column_stack([X, y]), delimiter=",", fmt="%.15g")
    argv = ["train", "--data", str(tmp_path / "ids.csv"), "--epochs", "1", "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "not class indices 0..k-1" in err and "--task regression" in err
    path = tmp_path / "r.safetensors"
    assert cli.main(argv + ["--task", "regression", "--save", str(path)]) == 0
    checkpoint = cnet.load(path, with_optimizer=True)
    assert checkpoint.extra["task"] == "regression" and checkpoint.model.out_features == 1
    assert cli.main(argv + ["--task", "classification", "--save", str(path)]) == 0
    checkpoint = cnet.load(path, with_optimizer=True)
    assert checkpoint.model.out_features == 3       # one class per distinct value
    assert checkpoint.extra["classes"] == [0, 10**12, 2 * 10**12]


def test_predict_refuses_a_model_whose_records_it_cannot_apply(tmp_path, capsys):
    X = np.random.default_rng(0).standard_normal((5, 4))
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    for i, extra in enumerate([{"preprocessing": {"method": "none"}},
                               {"preprocessing": {"mean": [0.0] * 4}},
                               {"preprocessing": {"mean": [0.0] * 3, "std": [1.0] * 3}},
                               {"classes": ["a", "a", "b"]}, {"classes": [[0], [1], [2]]},
                               {"label_column": 1.5}, {"split": {"data": "digits"}}]):
        path = tmp_path / f"m{i}.safetensors"
        cnet.save(cnet.Sequential(cnet.Dense(4, 3)), path, extra=extra)
        assert cli.main(["predict", str(path), str(tmp_path / "x.csv")]) == 2
        assert f"extra[{next(iter(extra))!r}]" in capsys.readouterr().err


def test_one_dimensional_X_in_an_npz_is_an_error(tmp_path, capsys):
    np.savez(tmp_path / "x1d.npz", X=np.zeros(60), y=np.arange(60) % 2)
    assert cli.main(["train", "--data", str(tmp_path / "x1d.npz")]) == 2
    assert "expected X of shape (rows, features), got shape (60,)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "nowhere.txt"], "data: expected"),
    (["predict", "missing.safetensors", "x.csv"], "No such file"),
    (["train", "--data", "missing.csv"], "missing.csv"),
])
def test_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith(f"cnet {argv[0]}: error:")


def test_a_diverging_run_is_a_one_line_error(capsys):
    assert cli.main(["train", "--lr", "1e30", "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnet train: error: loss: became nan") and err.count("\n") == 1


@pytest.mark.parametrize("command, columns", [("predict", 65), ("evaluate", 66)])
def test_a_csv_with_more_columns_than_the_model_has_inputs_is_a_one_line_error(
        command, columns, saved_model, tmp_path, capsys):
    """predict reads every column as a feature by default (a label column left in is one
    too many); evaluate takes the last as the label (an extra column remains): 65 either way."""
    X, y = cnet.data.load_digits()
    table = np.column_stack([X[:20], np.zeros((20, columns - 65)), y[:20]])
    np.savetxt(tmp_path / "xy.csv", table, delimiter=",", fmt="%g")
    assert cli.main([command, str(saved_model), str(tmp_path / "xy.csv")]) == 2
    err = capsys.readouterr().err
    assert "expected 64 feature columns (the model's inputs), got 65" in err
    assert err.count("\n") == 1


def test_predict_help_gives_its_own_label_column_default():
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    assert "else none: every column is a feature)" in " ".join(help_text.split())


def test_evaluate_on_digits_scores_the_rows_train_held_out(tmp_path, capsys):
    path = tmp_path / "d.safetensors"
    assert cli.main(["train", "--epochs", "1", "--hidden", "16", "--quiet", "--test-size",
                     "0.2", "--seed", "5", "--save", str(path)]) == 0
    train_out = capsys.readouterr().out
    assert cnet.load(path, with_optimizer=True).extra["split"] == {
        "data": "digits", "test_size": 0.2, "seed": 5, "stratified": True}
    assert cli.main(["evaluate", str(path), "digits"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "held-out rows of digits as split by train: 360"
    X, y = cnet.data.load_digits()
    _, X_test, _, y_test = cnet.data.train_test_split(X, y, test_size=0.2, seed=5, stratify=y)
    model = cnet.load(path).eval()
    accuracy = np.mean(model(X_test / 16).argmax(axis=1) == y_test)
    assert float(lines[1].split("accuracy: ")[1]) == pytest.approx(accuracy, abs=1e-4)
    assert f"test accuracy: {accuracy:.4f}" in train_out     # the rows train reported on

    # A model file without the record: every row, and the output says so.
    cnet.save(model, tmp_path / "old.safetensors", extra={"preprocessing": {"scale": 1 / 16}})
    assert cli.main(["evaluate", str(tmp_path / "old.safetensors"), "digits"]) == 0
    assert capsys.readouterr().out.startswith("all rows of digits: 1797 (the model file "
                                              "records no split")


def write_csv(path, header, columns, fmt="%s"):
    lines = [",".join(header)] + [",".join(fmt % v for v in row) for row in zip(*columns)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_and_predict_use_the_label_column_train_used(tmp_path, capsys):
    """The label column is in the middle: read as the last, the labels and features are wrong."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = (X[:, 0] + X[:, 2] > 0).astype(int)
    data = write_csv(tmp_path / "f.csv", ["a", "b", "target", "c"], [X[:, 0], X[:, 1], y, X[:, 2]])
    model_path = str(tmp_path / "m.safetensors")
    assert cli.main(["train", "--data", str(data), "--label-column", "target", "--epochs", "5",
                     "--quiet", "--save", model_path]) == 0
    assert cnet.load(model_path, with_optimizer=True).extra["label_column"] == "target"
    capsys.readouterr()
    assert cli.main(["evaluate", model_path, str(data)]) == 0
    out, err = capsys.readouterr()
    checkpoint = cnet.load(model_path, with_optimizer=True)
    mean, std = (np.array(checkpoint.extra["preprocessing"][k]) for k in ("mean", "std"))
    predicted = checkpoint.model.eval()((X - mean) / std).argmax(axis=1)
    assert float(out.split("accuracy: ")[1].split()[0]) == pytest.approx(
        np.mean(predicted == y), abs=1e-4)
    assert err == ""
    # Another column than the recorded one is used as asked, with a one-line warning.
    assert cli.main(["evaluate", model_path, str(data), "--label-column", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: --label-column 2 differs" in err
    assert "'target'" in err
    # predict drops the label column when the file has it, and reads features-only files whole.
    features = write_csv(tmp_path / "x.csv", ["a", "b", "c"], X.T)
    for path in (data, features):
        assert cli.main(["predict", model_path, str(path)]) == 0
        assert [int(v) for v in capsys.readouterr().out.split()] == predicted.tolist()


def test_text_and_whole_number_labels_are_encoded_as_label_encoder(tmp_path, capsys):
    rng = np.random.default_rng(1)
    names = np.array(["virginica", "setosa", "versicolor"])
    y = np.repeat([0, 1, 2], 20)
    X = rng.standard_normal((60, 2)) * 0.1 + np.array([[0, 3], [3, 0], [-3, -3]])[y]
    data = write_csv(tmp_path / "iris.csv", ["x1", "x2", "species"], [X[:, 0], X[:, 1], names[y]])
    model_path = str(tmp_path / "iris.safetensors")
    assert cli.main(["train", "--data", str(data), "--epochs", "20", "--quiet",
                     "--save", model_path]) == 0
    checkpoint = cnet.load(model_path, with_optimizer=True)
    assert checkpoint.extra["classes"] == ["setosa", "versicolor", "virginica"]
    assert checkpoint.extra["task"] == "classification" and checkpoint.model.out_features == 3
    capsys.readouterr()
    assert cli.main(["predict", model_path, str(data)]) == 0
    assert capsys.readouterr().out.split() == names[y].tolist()
    assert cli.main(["evaluate", model_path, str(data)]) == 0
    out = capsys.readouterr().out
    assert "accuracy: 1.0000" in out and "     setosa" in out
    unseen = write_csv(tmp_path / "u.csv", ["x1", "x2", "species"], [[0.0], [3.0], ["daisy"]])
    assert cli.main(["evaluate", model_path, str(unseen)]) == 2
    err = capsys.readouterr().err
    assert "label 'daisy' is not one of the model's classes" in err and err.count("\n") == 1
    assert cli.main(["train", "--data", str(data), "--task", "regression"]) == 2
    assert "y: regression needs numeric targets" in capsys.readouterr().err

    # Labels 1 and 2 are two classes (not three with an empty class 0); predict gives them back.
    data = write_csv(tmp_path / "12.csv", ["x1", "x2", "y"], [X[:40, 0], X[:40, 1], y[:40] + 1])
    assert cli.main(["train", "--data", str(data), "--epochs", "20", "--quiet",
                     "--save", model_path]) == 0
    assert cnet.load(model_path).out_features == 2
    capsys.readouterr()
    assert cli.main(["predict", model_path, str(data)]) == 0
    assert [int(v) for v in capsys.readouterr().out.split()] == (y[:40] + 1).tolist()


def test_proba_of_a_regressor_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "r.safetensors"
    cnet.save(cnet.Sequential(cnet.Dense(2, 1)), path, extra={"task": "regression"})
    np.savetxt(tmp_path / "x.csv", np.zeros((3, 2)), delimiter=",")
    assert cli.main(["predict", str(path), str(tmp_path / "x.csv"), "--proba"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnet predict: error: --proba:") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "bench", "info"])
def test_every_command_has_help(command):
    result = subprocess.run([sys.executable, "-m", "cnet", command, "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "usage: cnet " + command in result.stdout


def test_bad_option_value_exits_2():
    result = subprocess.run([sys.executable, "-m", "cnet", "train", "--epochs", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--epochs" in result.stderr


def test_bench_prints_ratios(capsys):
    assert cli.main(["bench", "--samples", "512"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.split()[-2].endswith("x") for line in lines[1:])


def test_info_names_the_versions(capsys):
    previous = cnet.set_num_threads(3)
    try:
        assert cli.main(["info"]) == 0
    finally:
        cnet.set_num_threads(previous)
    out = capsys.readouterr().out
    assert f"cnet {cnet.__version__}" in out
    assert "threads sharing large layers: 3 (cnet.set_num_threads)" in out


def test_history_plot_draws_loss_and_accuracy(tmp_path):
    model = cnet.Sequential(cnet.Dense(64, 10), seed=0)
    X, y = cnet.data.load_digits()
    history = cnet.Trainer(model, cnet.CrossEntropyLoss(), cnet.optim.Adam(model.parameters())) \
        .fit(X / 16, y, epochs=2, validation_split=0.2, verbose=0)
    fig = history.plot(tmp_path / "h.png")
    assert len(fig.axes) == 2 and (tmp_path / "h.png").stat().st_size > 1000
    assert len(fig.axes[0].lines) == 2      # training and validation
