"""What fit shows while it trains: a tqdm bar per epoch on a terminal, or one line per epoch.

verbose=0 shows nothing; verbose=1 shows a progress bar over the epoch's batches when
stderr is a terminal (one line per epoch otherwise, e.g. in logs and notebooks' captured
output); verbose=2 always shows one line per epoch, as Keras does.
"""
import numbers
import sys

from tqdm.auto import tqdm

BAR_UPDATES = 50   # the step runner runs this many chunks of batches per epoch under a bar


def _shown(value):
    """A logged number as Keras shows it: 4 decimals, or 4 significant digits in exponent
    form below 0.001 in magnitude (a loss of 2e-05 does not read 0.0000); anything else a
    callback logged, as str()."""
    if not isinstance(value, numbers.Real):
        return str(value)
    return f"{value:.4f}" if value == 0 or not abs(value) < 1e-3 else f"{value:.4e}"


def format_duration(seconds):
    """An epoch's time: 1.23s, or 45.6ms below a second (a tiny epoch does not read 0.00s)."""
    return f"{seconds:.2f}s" if seconds >= 1 else f"{seconds * 1e3:.3g}ms"


class EpochProgress:
    def __init__(self, verbose, epochs, n_batches, n_samples):
        self.verbose, self.epochs = verbose, epochs
        self.n_batches, self.n_samples = n_batches, n_samples
        self.use_bar = verbose == 1 and sys.stderr.isatty()
        self.bar = None

    def chunk(self):
        """Batches per call into the step runner: all of them unless a bar must move."""
        return max(1, self.n_batches // BAR_UPDATES) if self.use_bar else self.n_batches

    def start(self, epoch):
        if self.use_bar:
            self.bar = tqdm(total=self.n_batches, desc=f"Epoch {epoch + 1}/{self.epochs}",
                            unit="batch", leave=True, dynamic_ncols=True)

    def advance(self, batches):
        if self.bar is not None:
            self.bar.update(batches)

    def end(self, epoch, logs, seconds):
        if not self.verbose:        # (a bar exists only for verbose=1)
            return
        metrics = " - ".join(f"{k}: {_shown(v)}" for k, v in logs.items())
        rate = f"{self.n_samples / seconds:,.0f} samples/s" if seconds > 0 else ""
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rate} - {metrics}")
            self.bar.close()
            self.bar = None
        elif self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs} - {format_duration(seconds)} - {rate} - {metrics}")
