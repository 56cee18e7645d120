"""One generic name → object registry, used for methods, scorers, sequences and models.

Entries are either registered eagerly with the ``@registry.register(name)`` decorator or lazily
as ``"package.module:attr"`` strings, so that listing names never imports heavy modules (torch).
A lazy entry that fails to import only fails when it is looked up, never when listing.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; the message carries did-you-mean suggestions."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


@dataclass
class _Entry:
    target: Any  # the object itself, or a "module:attr" string still to import
    description: str


class Registry(Generic[T]):
    """A named collection of classes or callables of one kind (e.g. ``"method"``)."""

    def __init__(self, kind: str, base_cls: type | None = None) -> None:
        self.kind = kind
        self.base_cls = base_cls
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator that registers the decorated object under ``name``."""

        def decorator(obj: T) -> T:
            entry = self._entries.get(name)
            if entry is not None and entry.target is not obj and not _is_lazy_target_of(entry, obj):
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if self.base_cls is not None and isinstance(obj, type) and not issubclass(obj, self.base_cls):
                raise TypeError(f"{self.kind} {name!r} must subclass {self.base_cls.__name__}")
            doc = description or (entry.description if entry else "") or _first_line(obj)
            self._entries[name] = _Entry(obj, doc)
            return obj

        return decorator

    def add_lazy(self, name: str, target: str, description: str) -> None:
        """Register ``"module:attr"`` to be imported on first lookup."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
        self._entries[name] = _Entry(target, description)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def descriptions(self) -> dict[str, str]:
        """Name → one-line description, without importing lazy entries."""
        return {name: self._entries[name].description for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> None:
        """Raise :class:`UnknownNameError` with suggestions if ``name`` is not registered."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}"
            )

    def get(self, name: str) -> T:
        """The registered object; imports a lazy entry on first use."""
        self.check(name)
        entry = self._entries[name]
        if isinstance(entry.target, str):
            module_name, attr = entry.target.split(":")
            module = importlib.import_module(module_name)  # may register itself via the decorator
            entry = self._entries[name]
            if isinstance(entry.target, str):
                entry.target = getattr(module, attr)
        return entry.target


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _is_lazy_target_of(entry: _Entry, obj: Any) -> bool:
    """True when a lazy entry names exactly ``obj`` (its module registering itself on import)."""
    if not isinstance(entry.target, str):
        return False
    module_name, attr = entry.target.split(":")
    return getattr(obj, "__module__", None) == module_name and getattr(obj, "__name__", None) == attr
