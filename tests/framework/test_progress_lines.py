"""Progress when stdout is not a terminal: ``headrepair run`` prints one plain line per batch and
``headrepair bench`` one per finished cell; ``--quiet`` silences them.  Each test runs the real
command line in a subprocess with stdout captured (a pipe, not a terminal)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

RUN_LINE = re.compile(r"^progress: (\d+)/(\d+) evaluations, best one_minus_f1=(\S+) one_minus_f2=(\S+), "
                      r"hv=(\d\.\d{4}), elapsed (\S+), remaining ~(\S+)$")
BENCH_LINE = re.compile(r"^bench tiny: (\d+)/(\d+) cells done, elapsed (\S+), remaining ~(\S+) \(last: (\S+): "
                        r"hv=\d\.\d{4}, \d+\.\d s\)$")
DURATION = re.compile(r"^(\d+\.\ds|\d+s|\d+m\d\ds|\d+h\d\dm)$")


def cli(*args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "framework.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("quiet", [False, True])
def test_run_prints_one_line_per_batch_unless_quiet(tmp_path, quiet):
    proc = cli("run", "--problem", "rho-mnk", "--strategy", "random", "--budget", "10", "--batch-size", "3",
               "--set", "n_bits=30", "--seed", "2", "--out", tmp_path / "run", *(["--quiet"] if quiet else []))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("progress:")]
    assert "it/s" not in proc.stderr and "eval/s" not in proc.stderr  # no bar either way: stderr is no terminal
    if quiet:
        assert lines == []
        return
    matches = [RUN_LINE.match(ln) for ln in lines]
    assert all(matches), lines
    assert [int(m[1]) for m in matches] == [3, 6, 9, 10]  # one line per batch: 3 + 3 + 3 + 1
    assert all(int(m[2]) == 10 for m in matches)
    assert all(DURATION.match(m[6]) and DURATION.match(m[7]) for m in matches), lines
    assert matches[-1][7] == "0.0s"  # nothing remains after the last batch
    best = [(float(m[3]), float(m[4])) for m in matches]
    assert all(b[0] <= a[0] and b[1] <= a[1] for a, b in zip(best, best[1:], strict=False))  # best so far
    hv = [float(m[5]) for m in matches]
    assert hv == sorted(hv) and hv[-1] > 0


SUITE = """
name = "tiny"
budgets = [6]
batch_size = 3
seeds = 3
strategies = ["random"]
[[problems]]
label = "mnk10"
name = "rho-mnk"
options = { n_bits = 10, k = 1 }
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_bench_prints_one_line_per_finished_cell_unless_quiet(tmp_path, quiet):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    proc = cli("bench", "--suite", suite, "--out", tmp_path / "bench", *(["--quiet"] if quiet else []))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("bench tiny:")]
    if quiet:
        assert lines == []
        return
    matches = [BENCH_LINE.match(ln) for ln in lines]
    assert all(matches), lines
    assert [(int(m[1]), int(m[2])) for m in matches] == [(1, 3), (2, 3), (3, 3)]
    assert [m[5] for m in matches] == [f"mnk10__b6__random__s{s}" for s in range(3)]
    assert all(DURATION.match(m[3]) and DURATION.match(m[4]) for m in matches), lines
    assert matches[-1][4] == "0.0s"
