"""The command line: cnet train | predict | evaluate | bench | info.

Errors in what the user typed or gave us (a missing file, a bad CSV, a wrong option) are
one clear line on stderr and exit code 2; --help works for every command.
"""
import argparse
import collections
import csv
import os
import sys
import time

import numpy as np

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyReLU"}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
              "adagrad": "Adagrad"}
SCHEDULES = ("none", "step", "exponential", "cosine", "plateau")
DATASETS = ("digits", "mnist", "fashion-mnist")
# --label-column's default when not given: the column train recorded in the model, if any,
# else the command's own default.
NOT_GIVEN = object()


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


def _layer_sizes(text):
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes, got {text!r}")
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _label_column(text):
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _add_data_arguments(parser, default):
    parser.add_argument("--label-column", type=_label_column, default=NOT_GIVEN,
                        help=f"CSV: the label column, by name or index (default: {default}); "
                             "'none' when the file has no labels")


def build_parser():
    parser = argparse.ArgumentParser(prog="cnet", description="A compiled neural-network "
                                     "engine for the CPU.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train an MLP (default: on the bundled handwritten digits)",
        description="Train a multi-layer perceptron and report its test accuracy (or loss, "
                    "for regression) and speed. DATA is digits (bundled), mnist, "
                    "fashion-mnist (downloaded once into ~/.cache/cnet), or a .csv/.npz file.")
    train.add_argument("--data", default="digits", help="digits | mnist | fashion-mnist | "
                       "FILE.csv | FILE.npz (default: digits)")
    _add_data_arguments(train, "the last")
    train.add_argument("--hidden", type=_layer_sizes, default=[64],
                       help="hidden layer sizes, comma-separated (default: 64)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--dropout", type=float, default=0.0,
                       help="dropout probability after each hidden layer (default: 0)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    train.add_argument("--lr", type=float, default=1e-2, help="learning rate (default: 0.01)")
    train.add_argument("--momentum", type=float, default=0.9,
                       help="SGD / RMSprop momentum (default: 0.9)")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--schedule", choices=SCHEDULES, default="none",
                       help="learning-rate schedule, stepped once per epoch")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--task", choices=["auto", "classification", "regression"],
                       default="auto", help="auto (default): text labels and whole numbers 0..n-1 "
                       "are classes, other labels regression targets")
    train.add_argument("--test-size", type=float, default=0.25)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save", metavar="FILE", help="save the trained model (safetensors)")
    train.add_argument("--plot", metavar="FILE.png",
                       help="draw the loss and accuracy curves (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")

    predict = commands.add_parser("predict", help="predict with a saved model",
                                  description="Write the model's predictions for every row of "
                                  "DATA (.csv or .npz) as CSV: class labels (as in the training "
                                  "data) for a classifier, outputs for a regressor.")
    predict.add_argument("model", help="a file written by cnet train --save or cnet.save")
    predict.add_argument("data", help="FILE.csv or FILE.npz with the same features")
    _add_data_arguments(predict, "the one the model was trained with, dropped when the "
                        "file has it, else none: every column is a feature")
    predict.add_argument("--output", "-o", help="write here instead of standard output")
    predict.add_argument("--proba", action="store_true",
                         help="classifiers: write class probabilities instead of labels, "
                              "one column per class in sorted label order")

    evaluate = commands.add_parser("evaluate", help="score a saved model on labelled data",
                                   description="Report the loss and, for a classifier, the "
                                   "accuracy and the confusion matrix of a saved model on "
                                   "DATA: the mnist or fashion-mnist test set, the digits "
                                   "rows that train held out (all of them for a model file "
                                   "without train's record of its split), or every row of a "
                                   "file.")
    evaluate.add_argument("model")
    evaluate.add_argument("data")
    _add_data_arguments(evaluate, "the one the model was trained with, else the last")

    bench = commands.add_parser("bench", help="quick speed check against the NumPy reference",
                                description="Train one epoch of small MLPs with cnet and with "
                                "the pure-NumPy reference on this machine and print the "
                                "throughput ratios (the full suite is in bench/).")
    bench.add_argument("--samples", type=_positive_int, default=8192,
                       help="rows of the MNIST-shaped configuration (default: 8192)")
    commands.add_parser("info", help="versions, BLAS library and threads",
                        description="Print the versions of cnet, NumPy, SciPy and Python and "
                        "the BLAS library with its thread count.")
    return parser


# --- data ------------------------------------------------------------------------------------

def _is_csv(data):
    return data.endswith((".csv", ".csv.gz"))


def _load(data, label_column, kind="train"):
    """(X, y, preprocessing) for a named dataset or a file; y is None without labels, and a
    CSV label column of text (class names) comes as str."""
    import cnet
    if data == "digits":
        X, y = cnet.data.load_digits()
        return X, y, {"scale": 1 / 16}
    if data in ("mnist", "fashion-mnist"):
        loader = cnet.data.load_mnist if data == "mnist" else cnet.data.load_fashion_mnist
        X, y = loader(kind=kind)
        return X, y, {"scale": 1 / 255}
    if _is_csv(data):
        X, y = cnet.data.load_csv(data, label_column=label_column, text_labels=True)
    elif data.endswith(".npz"):
        X, y = cnet.data.load_npz(data, y_key=None if label_column is None else "y")
    else:
        raise UsageError(f"data: expected {', '.join(DATASETS)}, a .csv or a .npz file, "
                         f"got {data!r}")
    X = np.asarray(X, np.float64)
    if X.ndim != 2:
        raise UsageError(f"data: expected X of shape (rows, features), got shape {X.shape}")
    return X, y, None


def _classifies(y, task):
    """Whether to train a classifier on labels y. "auto" takes text labels and whole numbers
    0..n-1 for classes; other whole numbers are more often ids or amounts than classes."""
    text = y.dtype.kind == "U"
    if task == "regression":
        if text:
            raise UsageError(f"y: regression needs numeric targets, got labels such as {y[0]!r}")
        return False
    integer = np.issubdtype(y.dtype, np.integer)
    if y.ndim != 1 or not (text or integer):
        if task == "auto":
            return False
        raise UsageError(f"y: classification needs one whole-number or text label per row, "
                         f"got {y.dtype} labels of shape {y.shape}")
    if task == "auto" and integer and (y.min() < 0 or y.max() >= len(y)):
        raise UsageError(f"y: labels from {y.min()} to {y.max()} are not class indices 0..k-1 "
                         f"(k at most the {len(y)} rows); pass --task classification to make "
                         f"each distinct value a class, or --task regression to fit them as "
                         f"numbers")
    return True


def _split(X, y, split):
    """train's split of (X, y) as its model file records it (extra["split"])."""
    import cnet
    return cnet.data.train_test_split(X, y, test_size=split["test_size"], seed=split["seed"],
                                      stratify=y if split["stratified"] else None)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_preprocessing(preprocessing, model):
    def numbers_of(key, count):
        values = np.asarray(preprocessing.get(key), dtype=object)
        return values.shape == count and all(map(_is_number, values.flat))
    n_in = model.in_features
    return isinstance(preprocessing, dict) and (
        (set(preprocessing) == {"scale"} and numbers_of("scale", ()))
        or (set(preprocessing) == {"mean", "std"} and numbers_of("mean", (n_in,))
            and numbers_of("std", (n_in,))))


# The entries of a model file's extra that cnet train writes: (their form, a check of it).
EXTRA_FORMS = {
    "preprocessing": ("{'scale': s} or {'mean': [...], 'std': [...]} with one number per "
                      "feature", _is_preprocessing),
    "classes": ("distinct strings or numbers, one per output",
                lambda classes, model: isinstance(classes, list)
                and all(isinstance(c, str) or _is_number(c) for c in classes)
                and len(classes) == model.out_features and len(set(classes)) == len(classes)),
    "label_column": ("a column name or index",
                     lambda column, model: isinstance(column, str)
                     or (isinstance(column, int) and not isinstance(column, bool))),
    "split": ("{'data': name, 'test_size': number, 'seed': int, 'stratified': bool}",
              lambda split, model: isinstance(split, dict)
              and set(split) == {"data", "test_size", "seed", "stratified"}
              and isinstance(split["data"], str) and _is_number(split["test_size"])
              and isinstance(split["seed"], int) and isinstance(split["stratified"], bool)),
}


def _check_features(X, in_features):
    if X.shape[1] != in_features:
        raise UsageError(f"data: expected {in_features} feature columns (the model's inputs), "
                         f"got {X.shape[1]}; name a label column with --label-column")


def _preprocess(X, preprocessing):
    if "scale" in preprocessing:
        return X * preprocessing["scale"]
    return (X - np.asarray(preprocessing["mean"])) / np.asarray(preprocessing["std"])


# --- commands -------------------------------------------------------------------------------

def train(args):
    import cnet
    from cnet.progress import format_duration

    label_column = -1 if args.label_column is NOT_GIVEN else args.label_column
    X, y, preprocessing = _load(args.data, label_column)
    if y is None:
        raise UsageError("data: training needs labels (--label-column)")
    classify = _classifies(y, args.task)
    if classify:    # as scikit-learn's LabelEncoder: class i is the i-th smallest label
        classes, y = np.unique(y, return_inverse=True)
    else:
        y = y.astype(np.float64)
    # evaluate re-creates this split to score the held-out rows of a named dataset
    split = {"data": args.data if args.data in DATASETS else os.path.basename(args.data),
             "test_size": args.test_size, "seed": args.seed, "stratified": classify}
    X_train, X_test, y_train, y_test = _split(X, y, split)
    if preprocessing is None:   # z-score with the training rows' statistics
        std = X_train.std(axis=0)
        preprocessing = {"mean": X_train.mean(axis=0).tolist(),
                         "std": np.where(std > 0, std, 1.0).tolist()}
    X_train, X_test = _preprocess(X_train, preprocessing), _preprocess(X_test, preprocessing)
    n_out = len(classes) if classify else (1 if y.ndim == 1 else y.shape[1])
    model = _build_model(cnet, X.shape[1], n_out, args)
    optimizer = _build_optimizer(cnet, model, args)
    loss = cnet.CrossEntropyLoss() if classify else cnet.MSELoss()
    trainer = cnet.Trainer(model, loss, optimizer)
    callbacks = _schedule(cnet, optimizer, args)
    print(model)
    print(f"{len(X_train)} training and {len(X_test)} test samples, {optimizer!r}")
    start = time.perf_counter()
    history = trainer.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                          seed=args.seed, validation_data=(X_test, y_test),
                          verbose=0 if args.quiet else 1, callbacks=callbacks)
    seconds = time.perf_counter() - start
    result = trainer.evaluate(X_test, y_test)
    print("  ".join(f"test {k}: {v:.4f}" for k, v in result.items()))
    samples = len(history.epoch) * len(X_train)
    print(f"trained {samples:,} samples in {format_duration(seconds)}: "
          f"{samples / seconds:,.0f} samples/s "
          f"(validation included)")
    if args.save:
        extra = {"preprocessing": preprocessing,
                 "task": "classification" if classify else "regression", "split": split}
        if classify:
            extra["classes"] = classes.tolist()
        if _is_csv(args.data):
            extra["label_column"] = label_column
        cnet.save(model, args.save, optimizer, extra=extra)
        print(f"saved the model to {args.save}")
    if args.plot:
        history.plot(args.plot)
        print(f"saved the learning curves to {args.plot}")
    return 0


def _build_model(cnet, n_in, n_out, args):
    return cnet.Sequential.mlp([n_in, *args.hidden, n_out],
                               activation=getattr(cnet, ACTIVATIONS[args.activation]),
                               dropout=args.dropout, dtype=args.dtype, seed=args.seed)


def _build_optimizer(cnet, model, args):
    kwargs = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.optimizer in ("sgd", "rmsprop"):
        kwargs["momentum"] = args.momentum
    return getattr(cnet.optim, OPTIMIZERS[args.optimizer])(model.parameters(), **kwargs)


def _schedule(cnet, optimizer, args):
    from cnet import schedulers
    from cnet.callbacks import LearningRateScheduler
    scheduler = {
        "none": lambda: None,
        "step": lambda: schedulers.StepLR(optimizer, step_size=max(1, args.epochs // 3)),
        "exponential": lambda: schedulers.ExponentialLR(optimizer, gamma=0.9),
        "cosine": lambda: schedulers.CosineAnnealingLR(optimizer, T_max=args.epochs),
        "plateau": lambda: schedulers.ReduceLROnPlateau(optimizer, patience=2),
    }[args.schedule]()
    return [] if scheduler is None else [LearningRateScheduler(scheduler)]


# A saved model with what its file's extra records (classes: None for a regressor).
Saved = collections.namedtuple("Saved", ["trainer", "task", "preprocessing", "classes",
                                         "label_column", "split"])


def _load_model(path):
    import cnet
    checkpoint = cnet.load(path, with_optimizer=True)
    extra = checkpoint.extra if isinstance(checkpoint.extra, dict) else {}
    model = checkpoint.model.eval()
    for key, (form, is_valid) in EXTRA_FORMS.items():
        if extra.get(key) is not None and not is_valid(extra[key], model):
            raise UsageError(f"model: its extra[{key!r}] is not what cnet train writes "
                             f"({form}); predict with the Python API instead")
    # Without a recorded task, a model whose output width is >1 is read as a classifier.
    task = extra.get("task", "classification" if model.out_features > 1 else "regression")
    loss = cnet.CrossEntropyLoss() if task == "classification" else cnet.MSELoss()
    optimizer = checkpoint.optimizer or cnet.optim.SGD(model.parameters())
    # Without recorded classes, labels are the class indices themselves.
    classes = (extra.get("classes") or list(range(model.out_features))
               if task == "classification" else None)
    return Saved(cnet.Trainer(model, loss, optimizer), task, extra.get("preprocessing"),
                 classes, extra.get("label_column"), extra.get("split"))


def _label_column_for(args, saved, default):
    """--label-column as given, else for a CSV the column the model was trained with, else
    default. A given one other than the recorded one wins, with a warning."""
    recorded = saved.label_column if _is_csv(args.data) else None
    given = args.label_column
    if given is NOT_GIVEN:
        return default if recorded is None else recorded
    if recorded is not None and given != recorded:
        print(f"cnet {args.command}: warning: --label-column "
              f"{'none' if given is None else repr(given)} differs from the label column "
              f"the model was trained with ({recorded!r})", file=sys.stderr)
    return given


def _class_indices(y, classes):
    """The class index of each label in y, as LabelEncoder.transform."""
    index = {label: i for i, label in enumerate(classes)}
    if y.ndim != 1:
        raise UsageError(f"y: expected one class label per row, got shape {y.shape}")
    try:
        return np.array([index[label] for label in y.tolist()], dtype=np.int64)
    except KeyError as exc:
        shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
        raise UsageError(f"y: label {exc.args[0]!r} is not one of the model's classes "
                         f"({shown})") from None


def _rows_to_score(data, X, y, split):
    """(X, y, a line naming them): of digits, the rows train held out when the model records
    its split of them; the test set of mnist and fashion-mnist; else every row."""
    if data in ("mnist", "fashion-mnist"):
        return X, y, f"rows of the {data} test set: {len(X)}"
    if data == "digits" and split is not None and split["data"] == data:
        _, X, _, y = _split(X, y, split)
        return X, y, f"held-out rows of {data} as split by train: {len(X)}"
    caveat = (" (the model file records no split of them by train: its training rows may be "
              "among them)" if data == "digits" else "")
    return X, y, f"all rows of {data}: {len(X)}{caveat}"


def _predict_features(args, saved):
    """X of DATA for predict. The label column the model was trained with, when not given, is
    dropped if the file has it: by name in its header, or by index when the file has one
    column more than the model's inputs."""
    n_in = saved.trainer.model.in_features
    label_column = _label_column_for(args, saved, None)
    if args.label_column is NOT_GIVEN and label_column is not None:
        try:
            X, _, _ = _load(args.data, label_column)
            if X.shape[1] == n_in:
                return X
        except ValueError:      # no such column: reading every column shows other problems
            pass
        label_column = None
    X, _, _ = _load(args.data, label_column, kind="test")
    _check_features(X, n_in)
    return X


def predict(args):
    saved = _load_model(args.model)
    if args.proba and saved.task != "classification":
        raise UsageError("--proba: the model is a regressor; only a classifier gives class "
                         "probabilities")
    X = _predict_features(args, saved)
    if saved.preprocessing is not None:
        X = _preprocess(X, saved.preprocessing)
    if args.proba:
        rows = [[f"{p:.7g}" for p in row] for row in saved.trainer.predict_proba(X)]
    elif saved.task == "classification":
        rows = [[str(saved.classes[i])] for i in saved.trainer.predict(X)]
    else:
        outputs = saved.trainer.predict(X)
        rows = [[f"{v:.7g}" for v in row] for row in outputs.reshape(len(outputs), -1)]
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:        # csv quotes a class name holding a comma
        csv.writer(out, lineterminator="\n").writerows(rows)
    finally:
        if args.output:
            out.close()
    return 0


def evaluate(args):
    import cnet
    saved = _load_model(args.model)
    X, y, _ = _load(args.data, _label_column_for(args, saved, -1), kind="test")
    if y is None:
        raise UsageError("data: evaluation needs labels (--label-column)")
    _check_features(X, saved.trainer.model.in_features)
    if saved.task == "classification":
        y = _class_indices(y, saved.classes)
    elif y.dtype.kind == "U":
        raise UsageError(f"y: a regression model needs numeric targets, got labels such as "
                         f"{y[0]!r}")
    X, y, rows = _rows_to_score(args.data, X, y, saved.split)
    print(rows)
    if saved.preprocessing is not None:
        X = _preprocess(X, saved.preprocessing)
    result = saved.trainer.evaluate(X, y)
    print("  ".join(f"{k}: {v:.4f}" for k, v in result.items()))
    if saved.task == "classification":
        matrix = cnet.metrics.confusion_matrix(y, saved.trainer.predict(X),
                                               num_classes=len(saved.classes))
        labels = [str(c) for c in saved.classes]
        first = max(3, *map(len, labels))
        width = max(3, len(str(matrix.max())), *map(len, labels))
        print("confusion matrix (rows: true class, columns: predicted):")
        print(" " * (first + 1) + "".join(f"{c:>{width + 1}}" for c in labels))
        for label, row in zip(labels, matrix):
            print(f"{label:>{first}} " + "".join(f"{v:>{width + 1}}" for v in row))
    return 0


def bench(args):
    from cnet.benchmark import quick_ratios
    print(f"{'configuration':<32}{'cnet / NumPy':>14}{'cnet samples/s':>18}")
    for name, ratio, rate in quick_ratios(args.samples):
        print(f"{name:<32}{ratio:>13.1f}x{rate:>18,.0f}")
    return 0


def info(args):
    import scipy

    import cnet
    print(f"cnet {cnet.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"Python {sys.version.split()[0]}")
    threads = cnet.get_num_threads()
    print(f"threads sharing large layers: {threads or 'as many as the BLAS uses'} "
          f"(cnet.set_num_threads), flush denormals: {cnet.get_flush_denormal()}")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        print("BLAS: install threadpoolctl to see the BLAS library and its threads")
        return 0
    for pool in threadpool_info():
        print(f"{pool['user_api']}: {pool['internal_api']} {pool.get('version')}, "
              f"{pool['num_threads']} threads ({pool['filepath']})")
    return 0


COMMANDS = {"train": train, "predict": predict, "evaluate": evaluate, "bench": bench,
            "info": info}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ValueError, TypeError, OSError, FloatingPointError,
            ImportError) as exc:    # bad input, a diverged run, matplotlib missing for --plot
        print(f"cnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
