"""Parametrization of the contract suites over the registered names they check."""

from __future__ import annotations

from collections.abc import Sequence

import pytest


def _parametrize(metafunc, argname: str, values: Sequence[str], scope: str | None = None) -> None:
    if argname in metafunc.fixturenames:
        metafunc.parametrize(argname, list(values), ids=[str(v) for v in values], scope=scope)


def _names_or_fail(suite: object, attr: str) -> list[str]:
    names = list(getattr(suite, attr) or ())
    if not names:
        raise pytest.UsageError(f"{type(suite).__name__}: set `{attr}` to the registered names to check, "
                                f"e.g. {attr} = ['my-name']")
    return names
