"""sheep-runtime: a container-networking runtime daemon."""

__version__ = "0.1.0"
