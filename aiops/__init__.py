"""aiops: a self-healing agent for Kubernetes services.

The package is laid out as the loop it runs: ``collect`` -> ``detect`` -> ``correlate`` -> ``diagnose`` ->
``remediate``, with plain types in ``domain`` at the bottom and the runtime in ``serve`` on top.
"""

__version__ = "0.1.0"
