"""The command line: `cnet train` and `cnet info`."""
import argparse
import sys
import time

import numpy as np

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyReLU"}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}


def _layer_sizes(text):
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes, got {text!r}")
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="cnet", description="A compiled neural-network "
                                     "engine for the CPU.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an MLP on the bundled handwritten digits",
                                description="Train a multi-layer perceptron on the bundled "
                                "UCI digits (8x8 images, 1,797 samples) and report test accuracy.")
    train.add_argument("--hidden", type=_layer_sizes, default=[64],
                       help="hidden layer sizes, comma-separated (default: 64)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    train.add_argument("--lr", type=float, default=1e-2, help="learning rate (default: 0.01)")
    train.add_argument("--momentum", type=float, default=0.9,
                       help="SGD momentum (default: 0.9)")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--test-size", type=float, default=0.25)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--seed", type=int, default=0)
    commands.add_parser("info", help="versions, BLAS and threads")
    return parser


def train(args):
    import cnet

    X, y = cnet.data.load_digits()
    X /= 16.0   # pixel counts 0..16 -> [0, 1]
    X_train, X_test, y_train, y_test = cnet.data.train_test_split(
        X, y, test_size=args.test_size, seed=args.seed, stratify=y)
    activation = getattr(cnet, ACTIVATIONS[args.activation])
    sizes = [X.shape[1], *args.hidden, 10]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [cnet.Dense(n_in, n_out), activation()]
    model = cnet.Sequential(*layers[:-1], dtype=args.dtype, seed=args.seed)
    optimizer_class = getattr(cnet.optim, OPTIMIZERS[args.optimizer])
    extra = {"momentum": args.momentum} if args.optimizer == "sgd" else {}
    optimizer = optimizer_class(model.parameters(), lr=args.lr, **extra)
    trainer = cnet.Trainer(model, cnet.CrossEntropyLoss(), optimizer)
    print(model)
    print(f"{len(X_train)} training and {len(X_test)} test samples, {optimizer!r}")
    start = time.perf_counter()
    trainer.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                seed=args.seed, validation_data=(X_test, y_test))
    seconds = time.perf_counter() - start
    result = trainer.evaluate(X_test, y_test)
    print(f"test accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}")
    print(f"trained {args.epochs * len(X_train):,} samples in {seconds:.2f}s: "
          f"{args.epochs * len(X_train) / seconds:,.0f} samples/s (validation included)")
    return 0


def info(args):
    import scipy

    import cnet
    print(f"cnet {cnet.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"Python {sys.version.split()[0]}")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        print("BLAS: install threadpoolctl to see the BLAS library and its threads")
        return 0
    for pool in threadpool_info():
        print(f"{pool['user_api']}: {pool['internal_api']} {pool.get('version')}, "
              f"{pool['num_threads']} threads ({pool['filepath']})")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"train": train, "info": info}[args.command](args)
