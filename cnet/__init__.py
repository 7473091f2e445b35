"""cnet: a compiled neural-network engine for the CPU."""
try:
    from cnet import (_activations, _batchnorm, _blas, _dense, _dropout,  # noqa: F401
                      _engine, _losses, _optim)
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "cnet's compiled kernels are missing or stale. Build them with `pip install .` "
        "(or `pip install -e .` in a source checkout); a C compiler is needed."
    ) from exc

from cnet import callbacks, data, metrics, optim, schedulers
from cnet._blas import (get_thread_autotune, get_threaded_min_work, set_thread_autotune,
                        set_threaded_min_work)
from cnet._engine import get_flush_denormal, get_num_threads, set_flush_denormal, set_num_threads
from cnet.io import load, save
from cnet.layers import (BatchNorm1d, Dense, Dropout, Identity, LeakyReLU, Linear, ReLU, Sigmoid,
                         Softmax, Step, Tanh)
from cnet.losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss,
                         MSELoss, TripletMarginLoss)
from cnet.model import Parameter, Sequential
from cnet.trainer import History, Trainer

__version__ = "0.1.0"

__all__ = [
    "Sequential", "Parameter",
    "Dense", "Linear", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Step", "Softmax",
    "Dropout", "BatchNorm1d",
    "CrossEntropyLoss", "MSELoss", "L1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss",
    "KLDivLoss", "TripletMarginLoss",
    "Trainer", "History",
    "save", "load",
    "callbacks", "data", "metrics", "optim", "schedulers",
    "set_flush_denormal", "get_flush_denormal", "set_threaded_min_work",
    "get_threaded_min_work",
    "set_thread_autotune", "get_thread_autotune", "set_num_threads", "get_num_threads",
]
