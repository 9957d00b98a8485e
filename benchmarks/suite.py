"""Benchmark suites: what a suite holds and which cells it plans.

A suite is a TOML file (``benchmarks/suites/<name>.toml`` or any path)::

    name = "smoke"
    budgets = [20]
    batch_size = 5
    seeds = 3                       # seeds 0..2 for every strategy (--seeds overrides)
    strategies = ["*"]              # "*" = every registered strategy
    [strategy_options.qnehvi]       # options for one strategy (same for every problem)
    num_restarts = 1
    [[problems]]
    label = "mnk-N24-K2"
    name = "rho-mnk"
    options = { n_bits = 24, k = 2, rho = 0.0, seed = 1 }

``problems_from = "core"`` (a suite name or path) takes the problems of that suite, before any
``[[problems]]`` of its own, so ablation suites share the core set's problems without copying
them; the suite named must list its problems itself.

A strategy entry ``"name@variant"`` (e.g. ``"surrogate-sa@no-sensitivities"``) runs the registered
strategy ``name`` with the options of ``[strategy_options."name@variant"]``, reported under
its own label, so one suite can compare settings of one strategy.

Every cell of a problem names the same store (``stores/<label>.sqlite`` under the output folder);
running the cells is :mod:`benchmarks.runner`'s part.
"""

from __future__ import annotations

import os
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ProblemSpec", "Suite", "Cell", "SUITES_DIR", "load_suite", "base_strategy", "plan_cells"]

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass
class ProblemSpec:
    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    budgets: list[int]
    batch_size: int
    seeds: int
    strategies: list[str]
    problems: list[ProblemSpec]
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


@dataclass
class Cell:
    problem: ProblemSpec
    strategy: str
    strategy_options: dict[str, Any]
    budget: int
    batch_size: int
    seed: int
    store: str

    @property
    def key(self) -> str:
        return f"{self.problem.label}__b{self.budget}__{self.strategy}__s{self.seed}"


def _expand(value: Any) -> Any:
    """``${HEADREPAIR_DATA}``-style environment variables in string options."""
    if isinstance(value, str):
        return string.Template(value).safe_substitute(os.environ)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``benchmarks/suites/<name>.toml``) or by path."""
    path = _suite_path(name_or_path)
    data = tomllib.loads(path.read_text())
    probs = [ProblemSpec(p.get("label") or p["name"], p["name"], _expand(p.get("options", {})))
             for p in data.get("problems", [])]
    if "problems_from" in data:
        source = data["problems_from"]
        if "problems_from" in tomllib.loads(_suite_path(source).read_text()):
            raise ValueError(f"suite {path}: problems_from names {source!r}, which takes its problems from "
                             f"another suite itself; name a suite that lists its problems")
        probs = load_suite(source).problems + probs
    labels = [p.label for p in probs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"suite {path}: problem labels must be unique, got {labels}")
    budgets = data.get("budgets") or [data["budget"]]
    return Suite(name=data.get("name", path.stem), budgets=[int(b) for b in budgets],
                 batch_size=int(data.get("batch_size", 1)), seeds=int(data.get("seeds", 5)),
                 strategies=list(data.get("strategies", ["*"])), problems=probs,
                 strategy_options=_expand(data.get("strategy_options", {})), description=data.get("description", ""))


def _suite_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.is_file():
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        from framework.validate import did_you_mean

        known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no suite {name_or_path!r}{did_you_mean(name_or_path, known)} (known suites: "
                                f"{', '.join(known)}; or give a path to a TOML file)")
    return path


def base_strategy(label: str) -> str:
    """The registered strategy of a suite entry: ``"name@variant"`` -> ``"name"``."""
    return label.split("@", 1)[0]


def _strategies(suite: Suite) -> list[str]:
    from framework.registry import STRATEGIES

    names: list[str] = []
    for s in suite.strategies:
        for n in (STRATEGIES.names() if s == "*" else [s]):
            STRATEGIES.get(base_strategy(n))
            if n not in names:
                names.append(n)
    return names


def _check_subset(kind: str, chosen: list | None, known: list) -> set | None:
    if chosen is None:
        return None
    unknown = [c for c in chosen if c not in known]
    if unknown:
        from framework.validate import did_you_mean

        raise ValueError(f"this suite has no {kind} {unknown}{did_you_mean(unknown[0], known)} (it has {known})")
    return set(chosen)


def plan_cells(suite: Suite, out: Path, *, seeds: int | None = None, problems: list[str] | None = None,
               strategies: list[str] | None = None, budgets: list[int] | None = None) -> list[Cell]:
    """The suite's cells, optionally only some problems (labels), strategies and budgets: a part of
    a suite run into the same directory is the same cells, so parts add up to the whole."""
    n_seeds = seeds or suite.seeds
    names = _strategies(suite)
    want_p = _check_subset("problems", problems, [p.label for p in suite.problems])
    want_s = _check_subset("strategies", strategies, names)
    want_b = _check_subset("budgets", budgets, suite.budgets)
    cells = []
    for prob in suite.problems:
        if want_p is not None and prob.label not in want_p:
            continue
        store = str(out / "stores" / f"{prob.label}.sqlite")
        for budget in suite.budgets:
            if want_b is not None and budget not in want_b:
                continue
            for strategy in names:
                if want_s is not None and strategy not in want_s:
                    continue
                for seed in range(n_seeds):
                    cells.append(Cell(prob, strategy, dict(suite.strategy_options.get(strategy, {})), budget,
                                      suite.batch_size, seed, store))
    return cells
