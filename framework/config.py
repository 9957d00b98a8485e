"""Run configuration: defaults, config files (TOML or YAML), ``--set key=value`` routing.

A config file has the same keys as the ``headrepair run`` flags (``problem``, ``strategy``,
``budget``, ``batch_size``, ``seed``, ``out``, ``store``, ``max_cost``, ``pick_split``,
``export``, ``executor``, ``address``, ``workers``, ``worker_cpus``, ``pending``) plus a ``set``
table of options, e.g.::

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
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from framework.registry import PROBLEMS, STRATEGIES, option_names
from framework.validate import check_factory_options, check_value, did_you_mean, one_line

__all__ = ["RunConfig", "load_config_file", "parse_set", "route_options", "check_run_config", "DEFAULTS",
           "PICK_SPLITS"]

#: Splits the pick rule may minimize the bias on (held-out data stay unseen).
PICK_SPLITS = ("search", "validation")


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
    executor: str = "local"           # where evaluations run: "local" (this process) or "ray" (framework.evaluators)
    address: str | None = None        # ray: a running cluster's address; None = start a local Ray instance
    workers: int | None = None        # ray: actors (None = one per GPU, else per worker_cpus CPUs)
    worker_cpus: int | None = None    # ray: CPUs per actor (None = 1)
    pending: int | None = None        # batches in flight for a strategy that asks while pending (None = workers)
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
            raise ValueError(f"unknown run settings {unknown}{did_you_mean(unknown[0], known)} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**data)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


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
    if p.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ValueError(f"config file {str(p)!r}: use .toml, .yaml/.yml or .json")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {one_line(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"config file {str(p)!r} is not valid YAML: "
                         f"{getattr(exc, 'problem', None) or one_line(exc)}{where}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a table of settings, not {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    settable = {f.name for f in fields(RunConfig)} - {"run_id"}
    known = settable | {"set"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config file {str(p)!r}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], known)} "
                         f"(known keys: {', '.join(sorted(known))})")
    types = _field_types()
    for key, value in data.items():
        if key == "set":
            if not isinstance(value, dict):
                raise TypeError(f"config file {str(p)!r}: 'set' must be a table of options, got {value!r}")
            continue
        data[key] = check_value(f"config file {str(p)!r}: key {key!r}", value, types[key])
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
            raise ValueError(f"option {key!r} is not an option of problem {problem!r} nor of strategy {strategy!r}"
                             f"{did_you_mean(key, [*(p_names or []), *(s_names or [])])} (problem options: "
                             f"{', '.join(p_names or [])}; strategy options: {', '.join(s_names or [])})")
        (p_opts if in_p else s_opts)[key] = value
    return p_opts, s_opts


#: Options of a problem's head space (every built-in problem takes them).
_FRACTION, _PROTECTED = "max_pruned_fraction", "protected"


def check_run_config(cfg: RunConfig) -> RunConfig:
    """Check everything about ``cfg`` that can be checked without building the problem (so before a
    model loads and before anything is written): the type of every setting, budget and batch size,
    the pick rule, the problem and strategy names, their option names and value types, the pruned
    fraction in (0, 1] and protected heads as indices >= 0.  Raises ``ValueError``/``TypeError``/
    :class:`~framework.registry.RegistryError` with a one-line message; numbers spelled as strings
    (YAML reads ``1e-3`` as one) are turned into numbers in place.  Returns ``cfg``."""
    for f, tp in _field_types().items():
        setattr(cfg, f, check_value(f"setting {f!r}", getattr(cfg, f), tp))
    for f in ("budget", "batch_size"):
        if getattr(cfg, f) < 1:
            flag = "--" + f.replace("_", "-")
            raise ValueError(f"{f} ({flag}) must be >= 1, got {getattr(cfg, f)}")
    if cfg.max_cost < 0:
        raise ValueError(f"max_cost (--max-cost) must be >= 0 (a percentage above the unpruned model), "
                         f"got {cfg.max_cost}")
    if cfg.pick_split not in PICK_SPLITS:
        raise ValueError(f"pick_split (--pick-split) must be one of {', '.join(PICK_SPLITS)}, got {cfg.pick_split!r}"
                         f"{did_you_mean(cfg.pick_split, PICK_SPLITS)}")
    from framework.evaluators import check_executor

    check_executor(cfg.executor, address=cfg.address, workers=cfg.workers, worker_cpus=cfg.worker_cpus,
                   pending=cfg.pending)
    p_entry, s_entry = PROBLEMS.get(cfg.problem), STRATEGIES.get(cfg.strategy)
    cfg.problem_options = check_factory_options("problem", cfg.problem, p_entry.factory, cfg.problem_options)
    cfg.strategy_options = check_factory_options("strategy", cfg.strategy, s_entry.factory, cfg.strategy_options)
    fraction = cfg.problem_options.get(_FRACTION)
    if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise ValueError(f"option {_FRACTION!r} of problem {cfg.problem!r} must be in (0, 1] (the largest fraction "
                         f"of heads a mask may prune), got {fraction!r}")
    protected = cfg.problem_options.get(_PROTECTED)
    if protected is not None:
        bad = [i for i in protected if not isinstance(i, int) or isinstance(i, bool) or i < 0]
        if bad:
            raise ValueError(f"option {_PROTECTED!r} of problem {cfg.problem!r} takes flat head indices >= 0 "
                             f"(layer * heads_per_layer + head), got {bad[0]!r}")
    return cfg
