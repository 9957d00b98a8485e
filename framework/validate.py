"""Checking user input before anything is built: close matches for names, option values against
the types a factory declares.

Every check raises ``ValueError`` (or ``TypeError`` for a value of the wrong type) with a one-line
message that names the input and says what was expected; ``headrepair`` prints it as one line.
"""

from __future__ import annotations

import builtins
import collections.abc as cabc
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["did_you_mean", "one_line", "conform", "describe_type", "check_factory_options", "check_value",
           "annotations_of"]


def did_you_mean(name: object, known: Iterable[object], n: int = 3) -> str:
    """``"; did you mean 'x'?"`` for the close matches of ``name`` among ``known``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def one_line(text: object) -> str:
    """``text`` with its lines joined by a space (messages of other libraries can span lines)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class _Mismatch(Exception):
    pass


_NAMESPACE = {**vars(builtins), **{k: getattr(typing, k) for k in typing.__all__},
              **{k: getattr(cabc, k) for k in cabc.__all__}, "Path": Path}


def _resolve(annotation: Any) -> Any:
    """A string annotation evaluated among builtins, ``typing`` and ``collections.abc`` names;
    ``Any`` when it cannot be (then nothing is checked)."""
    if isinstance(annotation, str):
        try:
            return eval(annotation, {"__builtins__": {}}, _NAMESPACE)  # noqa: S307 - annotations of our factories
        except Exception:
            return Any
    return annotation


_SEQUENCES = (list, tuple, set, frozenset, cabc.Sequence, cabc.Iterable, cabc.Collection, cabc.Set,
              cabc.MutableSequence)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


def describe_type(tp: Any) -> str:
    """``int`` -> ``"an int"``, ``float | None`` -> ``"a number or None"``, ``list[int]`` -> ``"a list of int"``."""
    tp = _resolve(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is None or tp is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe_type(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an int"
    if tp is float:
        return "a number"
    if tp in (str, Path):
        return "a string"
    if (origin or tp) in _MAPPINGS:
        return "a table (e.g. {key: value})"
    if (origin or tp) in _SEQUENCES:
        inner = [a for a in args if a is not Ellipsis]
        what = "a list"
        if inner and len(set(inner)) == 1:
            what += " of " + describe_type(inner[0]).removeprefix("an ").removeprefix("a ")
        return what
    return getattr(tp, "__name__", str(tp))


def conform(value: Any, tp: Any) -> Any:
    """``value`` if it fits the annotation ``tp`` (a string that spells a number is turned into one
    where a number is expected: YAML reads ``1e-3`` as a string); raises ``_Mismatch`` otherwise.
    Annotations this checker does not know (classes, callables) accept anything."""
    tp = _resolve(tp)
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is None or tp is type(None):
        if value is None:
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arm in sorted(args, key=lambda a: a is str):  # a number before a string: "1e-3" stays a string last
            try:
                return conform(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _Mismatch
    if tp in (str, Path):
        if isinstance(value, str | Path):
            return value
        raise _Mismatch
    container = origin or tp
    if container in _MAPPINGS:
        if not isinstance(value, dict):
            raise _Mismatch
        if len(args) == 2:
            return {conform(k, args[0]): conform(v, args[1]) for k, v in value.items()}
        return value
    if container in _SEQUENCES:
        if not isinstance(value, list | tuple | set | frozenset):
            raise _Mismatch
        items = list(value)
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise _Mismatch
            out = [conform(v, a) for v, a in zip(items, args, strict=True)]
        elif args:
            out = [conform(v, args[0]) for v in items]
        else:
            out = items
        return type(value)(out) if isinstance(value, list | tuple) else value
    return value  # a class or callable this checker cannot judge


def annotations_of(factory: Callable[..., Any]) -> dict[str, Any] | None:
    """Keyword options of ``factory`` and their annotations; ``None`` when it takes ``**kwargs``
    (or has no signature)."""
    try:
        try:
            sig = inspect.signature(factory, eval_str=True)
        except Exception:
            sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name: p.annotation for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_factory_options(kind: str, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> dict:
    """Check ``options`` against ``factory``'s keyword options: unknown keys (with close matches)
    and values of the wrong type.  Returns the options, numbers spelled as strings turned into numbers."""
    hints = annotations_of(factory)
    if hints is None:
        return dict(options)
    out = {}
    for key, value in options.items():
        if key not in hints:
            raise TypeError(f"{kind} {name!r} has no option {key!r}{did_you_mean(key, hints)} "
                            f"(options: {', '.join(sorted(hints))})")
        try:
            out[key] = conform(value, hints[key])
        except _Mismatch:
            raise TypeError(f"option {key!r} of {kind} {name!r} expects {describe_type(hints[key])}, "
                            f"got {value!r}") from None
    return out


def check_value(label: str, value: Any, tp: Any) -> Any:
    """``value`` conformed to ``tp``, or ``TypeError("{label} expects ..., got ...")``."""
    try:
        return conform(value, tp)
    except _Mismatch:
        raise TypeError(f"{label} expects {describe_type(tp)}, got {value!r}") from None
