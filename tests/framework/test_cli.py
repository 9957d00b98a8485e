"""CLI: run from flags and config files, option routing, list, errors."""

from __future__ import annotations

import json

import pytest

from framework.cli import main
from framework.config import parse_set, route_options


def test_run_with_flags_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--problem", "knapsack", "--strategy", "random", "--budget", "12", "--batch-size", "5",
               "--seed", "3", "--set", "n_items=16", "--set", "max_ratio=0.5", "--out", str(out), "--quiet"])
    assert rc == 0
    for name in ("run.json", "evaluations.sqlite", "result.json", "front.csv", "all.csv", "front.png", "hv.png",
                 "report.md"):
        assert (out / name).is_file(), name
    res = json.loads((out / "result.json").read_text())
    assert res["problem"] == "knapsack" and res["strategy"] == "random" and res["seed"] == 3
    assert res["budget"] == 12 and res["n_evaluations"] == 12 and len(res["hv_curve"]) == 12
    assert res["front"] and set(res["front"][0]) == {"mask", "objectives"}
    assert res["strategy_options"]["max_ratio"] == 0.5
    assert len(res["front"][0]["mask"]) == 16
    # the same directory is not overwritten
    assert main(["run", "--problem", "knapsack", "--strategy", "random", "--out", str(out), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_config_file_and_flag_override(tmp_path, fmt):
    cfg = tmp_path / f"c.{fmt}"
    if fmt == "toml":
        cfg.write_text('problem = "rho-mnk"\nstrategy = "random"\nbudget = 9\nbatch-size = 2\n'
                       '[set]\nn_bits = 12\n"problem.k" = 1\n')
    else:
        cfg.write_text("problem: rho-mnk\nstrategy: random\nbudget: 9\nbatch_size: 2\nset:\n  n_bits: 12\n"
                       "  problem.k: 1\n")
    out = tmp_path / "o"
    assert main(["run", "--config", str(cfg), "--budget", "7", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["budget"] == 7 and res["batch_size"] == 2
    assert res["config"]["problem_options"] == {"n_bits": 12, "k": 1}


def test_option_routing_and_errors():
    assert parse_set(["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=mlp"]) == {"a": 1, "b": 0.5, "c": True,
                                                                          "d": [1, 2], "e": "mlp"}
    p, s = route_options("rho-mnk", "random", {"n_bits": 10, "max_ratio": 0.2, "problem.seed": 4})
    assert p == {"n_bits": 10, "seed": 4} and s == {"max_ratio": 0.2}
    with pytest.raises(ValueError, match="not an option"):
        route_options("rho-mnk", "random", {"bogus": 1})
    with pytest.raises(ValueError, match="key=value"):
        parse_set(["novalue"])


def test_component_options_reach_the_component_and_are_checked_before_anything_is_written(tmp_path, capsys):
    _, s = route_options("rho-mnk", "surrogate-sa", {"strategy.surrogate.n_members": 3, "n_chains": 4})
    assert s == {"surrogate_options": {"n_members": 3}, "n_chains": 4}
    with pytest.raises(ValueError, match="no component 'annealer'"):
        route_options("rho-mnk", "surrogate-sa", {"strategy.annealer.n_steps": 3})
    # a typo in a surrogate option fails at once: no run directory, no store
    out = tmp_path / "typo"
    rc = main(["run", "--problem", "rho-mnk", "--strategy", "surrogate-sa", "--budget", "12", "--set", "n_bits=10",
               "--set", "strategy.surrogate.n_member=3", "--out", str(out), "--quiet"])
    assert rc == 2 and not out.exists()
    assert "n_member" in capsys.readouterr().err
    # a good one is recorded where result.json can feed it back
    out = tmp_path / "ok"
    assert main(["run", "--problem", "rho-mnk", "--strategy", "surrogate-sa", "--budget", "12", "--batch-size", "4",
                 "--set", "n_bits=10", "--set", "surrogate=mlp", "--set", "strategy.surrogate.n_members=2",
                 "--set", "n_steps=20",
                 "--set", "strategy.surrogate.max_epochs=20", "--out", str(out), "--quiet"]) == 0
    opts = json.loads((out / "result.json").read_text())["strategy_options"]
    assert opts["surrogate_options"] == {"n_members": 2, "max_epochs": 20} and opts["n_steps"] == 20


def test_list_and_unknown_names(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "rho-mnk" in out and "random" in out and "acquisitions:" in out and "ehvi" in out
    assert main(["run", "--problem", "rho-mkn", "--strategy", "random", "--quiet"]) == 2
    assert "did you mean 'rho-mnk'" in capsys.readouterr().err


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("list", "run", "resume", "evaluate", "export", "report"):
        assert cmd in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--problem", "--strategy", "--budget", "--batch-size", "--seed", "--out", "--config", "--set"):
        assert flag in text


def _option_helps(text: str) -> dict[str, str]:
    """``{"--budget": "--budget BUDGET real evaluations ... (default: 50)", ...}`` from a --help text."""
    helps: dict[str, str] = {}
    flag = None
    for line in text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = [t.rstrip(",") for t in line.split() if t.startswith("--")][0]
            helps[flag] = line
        elif flag and line.startswith("   "):
            helps[flag] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in helps.items()}


@pytest.mark.parametrize("command", ["run", "bench", "resume", "evaluate", "export", "transfer", "attribute"])
def test_help_states_each_default_once_and_truly(command, capsys):
    """Flags whose value comes from the run configuration have argparse default None: their help
    states the configuration's default, once, and never "(default: None)"."""
    from framework.cli_commands import _run_config
    from framework.cli_parser import build_parser
    from framework.config import DEFAULTS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    helps = _option_helps(text)
    assert "(default: None)" not in " ".join(text.split())
    for flag, help_text in helps.items():
        assert help_text.count("default") <= 1, (flag, help_text)
    if command != "run":
        return
    assert " ".join(text.split()).count(f"(default: {DEFAULTS.budget})") == 1
    assert helps["--budget"].endswith(f"(default: {DEFAULTS.budget})")
    cfg = _run_config(build_parser().parse_args(["run"]))  # what a run without flags really uses
    for flag, value in (("--problem", cfg.problem), ("--strategy", cfg.strategy), ("--budget", cfg.budget),
                        ("--batch-size", cfg.batch_size), ("--seed", cfg.seed), ("--max-cost", cfg.max_cost),
                        ("--pick-split", cfg.pick_split)):
        assert f"(default: {value})" in helps[flag], (flag, helps[flag])


def test_every_parser_built_in_one_process_has_the_plugin_commands(capsys):
    """Plug-in sub-commands (entry points ``headrepair.commands``) are added to every parser, not
    only to the first one a process builds (a second ``main`` call used to lose them)."""
    from framework.cli_parser import build_parser

    for _ in range(2):
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        assert {"bench", "transfer"} <= set(sub.choices)
    with pytest.raises(SystemExit) as exc:
        main(["transfer", "--help"])
    assert exc.value.code == 0 and "Spearman" in capsys.readouterr().out
