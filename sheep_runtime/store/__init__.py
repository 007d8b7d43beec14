"""Durable state in SQLite."""

from sheep_runtime.store.sqlite import Store

__all__ = ["Store"]
