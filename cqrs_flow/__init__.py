"""cqrs-flow: a declarative CQRS framework driven by a YAML topology."""

__version__ = "0.1.0"

__all__ = ["__version__"]
