"""Run configuration: defaults, config files (TOML or YAML), ``--set key=value`` routing.

A config file has the same keys as the ``headrepair run`` flags (``problem``, ``strategy``,
``budget``, ``batch_size``, ``seed``, ``out``, ``store``, ``max_cost``, ``pick_split``,
``export``) plus a ``set`` table of options, e.g.::

    problem = "masked-lm"
    strategy = "surrogate-sa"
    budget = 120
    [set]
    mode = "oneshot"
    "problem.bias_metric" = "likelihood"

An option key may name its target (``problem.x``, ``strategy.x``); an unprefixed key goes to
whichever of the problem and the strategy accepts it (an error if both or neither do).  A
strategy's component takes ``strategy.COMPONENT.x`` (e.g. ``strategy.surrogate.n_members=8``
sets ``n_members`` in the strategy's ``surrogate_options``).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from framework.registry import PROBLEMS, STRATEGIES, option_names

__all__ = ["RunConfig", "load_config_file", "parse_set", "route_options", "DEFAULTS"]


@dataclass
class RunConfig:
    """Everything that defines a run (saved as ``run.json`` in the run directory)."""

    problem: str = "masked-lm"
    strategy: str = "surrogate-sa"
    budget: int = 50
    batch_size: int = 10
    seed: int = 0
    out: str | None = None
    store: str | None = None          # None = <out>/evaluations.sqlite
    max_cost: float = 5.0             # pick: the cost objective at most this % above the unpruned model on
                                      # the pick, validation and held-out splits (each against its own)
    pick_split: str = "validation"    # pick on "validation" (default; search where a problem has none) or "search"
    export: bool = True
    problem_options: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run settings {unknown}; known: {sorted(known)}")
        return cls(**data)


DEFAULTS = RunConfig()


def parse_value(text: str) -> Any:
    """``"5"`` -> 5, ``"0.1"`` -> 0.1, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], ``"{a: 1}"`` -> dict,
    anything else -> the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["a=1", "problem.b=x"]`` -> ``{"a": 1, "problem.b": "x"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) run config into a flat dict of settings;
    the ``set`` table is returned under ``"set"``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    text = p.read_text()
    if p.suffix == ".toml":
        data = tomllib.loads(text)
    elif p.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    elif p.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file {str(p)!r}: use .toml, .yaml/.yml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a table of settings")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    known = {f.name for f in fields(RunConfig)} | {"set"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config file {str(p)!r}: unknown keys {unknown}; known: {sorted(known)}")
    return data


def route_options(problem: str, strategy: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--set`` options into (problem options, strategy options)."""
    p_names = option_names(PROBLEMS.get(problem).factory)
    s_names = option_names(STRATEGIES.get(strategy).factory)
    p_opts: dict[str, Any] = {}
    s_opts: dict[str, Any] = {}
    for key, value in options.items():
        target, dot, name = key.partition(".")
        if dot and target == "strategy" and "." in name:  # strategy.COMPONENT.KEY -> COMPONENT_options[KEY]
            component, _, sub = name.partition(".")
            group = f"{component}_options"
            if s_names is not None and group not in s_names:
                raise ValueError(f"option {key!r}: strategy {strategy!r} has no component {component!r} "
                                 f"(no option {group!r})")
            s_opts.setdefault(group, {})[sub] = value
            continue
        if dot and target in ("problem", "strategy"):
            (p_opts if target == "problem" else s_opts)[name] = value
            continue
        in_p = p_names is None or key in p_names
        in_s = s_names is None or key in s_names
        if in_p and in_s:
            raise ValueError(f"option {key!r} is accepted by both problem {problem!r} and strategy {strategy!r}; "
                             f"write problem.{key}= or strategy.{key}=")
        if not (in_p or in_s):
            raise ValueError(f"option {key!r} is not an option of problem {problem!r} "
                             f"({', '.join(p_names or [])}) nor of strategy {strategy!r} ({', '.join(s_names or [])})")
        (p_opts if in_p else s_opts)[key] = value
    return p_opts, s_opts
