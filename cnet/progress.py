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
    """A logged number to 4 significant digits; anything a callback logged, as str()."""
    return f"{value:.4g}" if isinstance(value, numbers.Real) else str(value)


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
            print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {rate} - {metrics}")
