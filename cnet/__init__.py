"""cnet: a compiled neural-network engine for the CPU."""
try:
    from cnet import _blas, _dense  # noqa: F401  (the compiled core)
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "cnet's compiled kernels are missing. Build them with `pip install .` "
        "(or `pip install -e .` in a source checkout); a C compiler is needed."
    ) from exc

__version__ = "0.1.0"
