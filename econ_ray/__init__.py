"""econ-ray: accuracy-vs-compute Pareto search for transformers.

The public API is small: load a config, train one point, count FLOPs. Everything else is reachable
through the ``econ-ray`` CLI or the subpackages named by what they do.
"""

__version__ = "0.1.0"
