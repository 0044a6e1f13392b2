"""The package version (one place; ``econ_ray.__version__`` and ``econ-ray --version`` read it)."""

__version__ = "0.1.0"
