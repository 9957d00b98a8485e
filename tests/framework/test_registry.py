"""Registry: duplicates refused, plug-ins found through entry points, helpful unknown-name errors."""

from __future__ import annotations

import sys
import textwrap

import pytest

from framework.registry import PROBLEMS, STRATEGIES, Registry, RegistryError


def _install_plugin(root, dist: str, group: str, entries: dict[str, str], module: str, source: str) -> None:
    """Install a distribution the way pip lays it out: a module and a ``.dist-info`` with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")


PLUGIN = """
import numpy as np
from framework.strategy import Strategy

class AllKeep(Strategy):
    '''Asks masks that prune exactly one head, in order.'''
    def _setup(self):
        self.i = 0
    def ask(self, n):
        out = self.problem.space.keep_all(n)
        for row in out:
            row[self.i % self.problem.space.dim] = False
            self.i += 1
        return out
    def tell(self, masks, values):
        pass
"""


def test_plugin_found_through_entry_point(tmp_path, monkeypatch):
    _install_plugin(tmp_path, "tiny_plugin", "headrepair.strategies", {"one-off": "tiny_plugin_mod:AllKeep"},
                    "tiny_plugin_mod", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("strategy", "headrepair.strategies")
    assert "one-off" in reg.names()
    assert "random" in reg.names()  # the built-ins come through the same entry points
    entry = reg.get("one-off")
    assert entry.source == "tiny_plugin"
    assert entry.summary == "Asks masks that prune exactly one head, in order."
    strategy = reg.create("one-off")
    assert type(strategy).__name__ == "AllKeep"
    sys.modules.pop("tiny_plugin_mod", None)


def test_duplicate_names_refused(tmp_path, monkeypatch):
    reg = Registry("strategy", "headrepair.strategies")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("random", object)
    reg.register("mine", object, "x")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("mine", dict, "y")
    # a plug-in that reuses a built-in name is refused too
    _install_plugin(tmp_path, "clash", "headrepair.strategies", {"random": "clash_mod:AllKeep"}, "clash_mod", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="already registered"):
        Registry("strategy", "headrepair.strategies").names()
    sys.modules.pop("clash_mod", None)


def test_unknown_name_lists_close_matches():
    with pytest.raises(RegistryError) as err:
        STRATEGIES.get("randon")
    assert "'random'" in str(err.value) and "did you mean" in str(err.value)
    with pytest.raises(RegistryError, match="registered:"):
        PROBLEMS.get("zzzz")


def test_unknown_option_names_valid_ones():
    with pytest.raises(TypeError, match="max_ratio"):
        STRATEGIES.create("random", max_rato=0.1)


def test_broken_plugin_does_not_hide_others(tmp_path, monkeypatch):
    _install_plugin(tmp_path, "broken", "headrepair.strategies", {"broken-one": "no_such_module:X"},
                    "broken_mod", "x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("strategy", "headrepair.strategies")
    assert "broken-one" in reg.names()  # found; imported only when used
    assert reg.get("random").name == "random"
    with pytest.warns(RuntimeWarning, match="broken-one"):
        entries = reg.entries()
    assert "random" in [e.name for e in entries] and "broken-one" not in [e.name for e in entries]
    assert "no_such_module" in reg.broken()["broken-one"]
    with pytest.raises(RegistryError, match="no_such_module"):
        reg.get("broken-one")


def test_framework_imports_no_plugin_package():
    import subprocess

    code = ("import sys, framework.cli, framework.cli_parser, framework.cli_commands, framework.runs, "
            "framework.choice, framework.result_files, framework.progress, framework.loop, framework.results, "
            "framework.store, framework.registry; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('objectives', 'strategies', 'surrogates', "
            "'benchmarks', 'torch', 'transformers', 'botorch')]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)
