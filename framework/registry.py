"""Registries: name -> factory, for problems, strategies, surrogates and acquisitions.

Built-in entries and third-party plug-ins register the same way, through package entry
points (groups ``headrepair.problems``, ``headrepair.strategies``,
``headrepair.surrogates``, ``headrepair.acquisitions``), so this module imports none of them.  Programmatic
registration (:meth:`Registry.register`) is there for notebooks and tests.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from framework.validate import did_you_mean

__all__ = ["Registry", "RegistryError", "Entry", "ACQUISITIONS", "PROBLEMS", "STRATEGIES", "SURROGATES"]


class RegistryError(LookupError):
    """Unknown or duplicate registry name."""


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    summary: str
    source: str  # distribution that provided it, or "runtime"


def _summary_of(factory: Callable[..., Any]) -> str:
    text = getattr(factory, "summary", "") or inspect.getdoc(factory) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


class Registry:
    """Name -> factory.  Refuses duplicate names; unknown names raise with close matches."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._pending: dict[str, tuple[metadata.EntryPoint, str]] = {}  # found, not imported yet
        self._broken: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, factory: Callable[..., Any], summary: str | None = None,
                 *, source: str = "runtime") -> Callable[..., Any]:
        """Add ``factory`` under ``name``; a name already taken raises :class:`RegistryError`."""
        self._load()
        self._check_free(name, source)
        self._entries[name] = Entry(name, factory, summary or _summary_of(factory), source)
        return factory

    def _check_free(self, name: str, source: str) -> None:
        old = (self._entries[name].source if name in self._entries
               else self._pending[name][1] if name in self._pending else None)
        if old is not None:
            raise RegistryError(f"{self.kind} {name!r} is already registered (by {old}); "
                                f"refusing the duplicate from {source}")

    def _load(self) -> None:
        """Read the entry points (cheap); a plug-in's module is imported when it is first used."""
        if self._loaded:
            return
        self._loaded = True
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            self._check_free(ep.name, dist)
            self._pending[ep.name] = (ep, dist)

    def _resolve(self, name: str) -> None:
        ep, dist = self._pending.pop(name)
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plug-in must not hide the others
            why = (f"cannot load {self.kind} plug-in {ep.name!r} = {ep.value!r} from {dist}: "
                   f"{type(exc).__name__}: {exc}")
            self._broken[name] = why
            warnings.warn(why, RuntimeWarning, stacklevel=4)
            return
        self._entries[name] = Entry(name, factory, _summary_of(factory), dist)

    def reload(self) -> None:
        """Forget everything and read the entry points again (after installing a plug-in)."""
        self._entries.clear()
        self._pending.clear()
        self._broken.clear()
        self._loaded = False
        self._load()

    def names(self) -> list[str]:
        """Registered names (plug-ins found through entry points included, loaded or not)."""
        self._load()
        return sorted(set(self._entries) | set(self._pending) | set(self._broken))

    def broken(self) -> dict[str, str]:
        """Plug-ins whose module failed to import: name -> reason (imports every plug-in)."""
        self.entries()
        return dict(self._broken)

    def entries(self) -> list[Entry]:
        """Every loadable entry (imports every plug-in; broken ones warn and are left out)."""
        self._load()
        for name in list(self._pending):
            self._resolve(name)
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries or name in self._pending or name in self._broken

    def get(self, name: str) -> Entry:
        self._load()
        if name in self._pending:
            self._resolve(name)
        if name in self._broken:
            raise RegistryError(self._broken[name])
        if name not in self._entries:
            known = self.names()
            raise RegistryError(f"unknown {self.kind} {name!r}{did_you_mean(name, known)} "
                                f"(registered: {', '.join(known) or 'none'})")
        return self._entries[name]

    def check_options(self, name: str, options: dict[str, Any]) -> Entry:
        """Raise (without building anything) if ``name`` is unknown or ``options`` holds a key its
        factory does not take; returns the entry."""
        entry = self.get(name)
        valid = option_names(entry.factory)
        if valid is not None:
            bad = sorted(set(options) - set(valid))
            if bad:
                raise TypeError(f"{self.kind} {name!r} has no option(s) {bad}{did_you_mean(bad[0], valid)} "
                                f"(valid options: {', '.join(sorted(valid))})")
        return entry

    def create(self, name: str, **options: Any) -> Any:
        """Build the entry ``name`` with keyword ``options``; unknown options name the valid ones."""
        entry = self.check_options(name, options)
        obj = entry.factory(**options)
        if not getattr(obj, "name", ""):  # instances know the name they were created under
            try:
                obj.name = name
            except AttributeError:
                pass
        return obj


def option_names(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword options a factory accepts, or ``None`` when it takes ``**kwargs``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


PROBLEMS = Registry("problem", "headrepair.problems")
STRATEGIES = Registry("strategy", "headrepair.strategies")
SURROGATES = Registry("surrogate", "headrepair.surrogates")
ACQUISITIONS = Registry("acquisition", "headrepair.acquisitions")
