"""The evaluators (framework/evaluators.py) on a real local Ray instance of 2 CPUs (one per module):
the Ray pool gives the same evaluations and front as the local evaluator, keeps the budget exact
with batches in flight, loses nothing and counts nothing twice when an actor dies mid-run; a
benchmark spread over Ray gives the serial results.csv; `headrepair run --executor ray` gives the
local front; bad executor settings end with one line (exit status 2)."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acquisition.composed import torch_threads
from framework.evaluators import LocalEvaluator, RayEvaluator
from framework.loop import optimize
from framework.registry import PROBLEMS, STRATEGIES
from framework.store import EvaluationStore

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
MNK = {"n_bits": 24, "k": 2, "seed": 3}


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance (2 CPUs) for the module; evaluators reuse it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def run(problem_name, options, strategy, budget, *, evaluator=None, batch_size=5, seed=0, store=None, **kw):
    problem = PROBLEMS.create(problem_name, **options)
    try:
        res = optimize(problem, STRATEGIES.create(strategy), budget, batch_size=batch_size, seed=seed, store=store,
                       evaluator=evaluator, progress=False, **kw)
    finally:
        problem.close()
    return res


def pairs(res) -> set:
    """Every received evaluation as (packed mask, values), regardless of the order received."""
    return {(np.packbits(m).tobytes(), tuple(np.round(v, 12))) for m, v in zip(res.masks, res.values, strict=True)}


def front(res) -> set:
    return {(np.packbits(m).tobytes(), tuple(np.round(v, 12))) for m, v in
            zip(res.front_masks, res.front_values, strict=True)}


def store_rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT mask FROM evaluations").fetchall()
    finally:
        con.close()


def test_ray_pool_gives_the_local_evaluations_and_front_with_batches_in_flight(tmp_path):
    local = run("rho-mnk", MNK, "random", 23)
    ev = RayEvaluator("rho-mnk", MNK, workers=2)
    try:
        seen_pending = []
        res = run("rho-mnk", MNK, "random", 23, evaluator=ev, store=EvaluationStore(tmp_path / "s.sqlite"),
                  max_pending=3, callbacks=[lambda s: seen_pending.append(s.n_evaluations)])
    finally:
        ev.close()
    assert ev.slots == 2 and ev.n_restarts == 0
    assert res.n_evaluations == local.n_evaluations == 23 and res.budget_spent == 23   # 23: a last, smaller batch
    assert pairs(res) == pairs(local) and front(res) == front(local)
    assert res.hypervolume == pytest.approx(local.hypervolume, abs=1e-12)
    rows = store_rows(tmp_path / "s.sqlite")
    assert len(rows) == 23 == len(set(rows))                     # each evaluation stored once
    assert seen_pending == sorted(seen_pending)                  # told batch by batch as they arrived


def test_a_strategy_that_waits_for_each_batch_gets_the_same_run_in_the_same_order():
    assert not STRATEGIES.get("nsga2").factory.asks_while_pending
    local = run("rho-mnk", MNK, "nsga2", 20, seed=1)
    ev = RayEvaluator("rho-mnk", MNK, workers=2)
    try:
        res = run("rho-mnk", MNK, "nsga2", 20, seed=1, evaluator=ev, max_pending=4)
    finally:
        ev.close()
    np.testing.assert_array_equal(res.masks, local.masks)
    np.testing.assert_array_equal(res.values, local.values)
    np.testing.assert_array_equal(res.hv_curve, local.hv_curve)


def test_tiny_llama_on_ray_workers_gives_the_local_evaluations(tmp_path):
    from objectives.masked_lm.tiny import CORPUS_WORDS, save_tiny_llama

    model = save_tiny_llama(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(CORPUS_WORDS, 80)) for _ in range(12)))
    opts = {"model": str(model), "corpus": str(corpus), "bias_metric": "likelihood", "window": 32, "stride": 16,
            "n_windows": 3, "n_templates": 2, "max_sentences": 40, "n_boot": 20, "batch_size": 16,
            "max_pruned_fraction": 0.5, "device": "cpu", "dtype": "float32"}
    # the actors build the problem from the same options; float32 sums depend on torch's thread count, so the
    # local run uses the actors' (worker_cpus=1)
    with torch_threads(1):
        local = run("masked-lm", opts, "random", 8, batch_size=4)
    ev = RayEvaluator("masked-lm", opts, workers=2, worker_cpus=1)
    try:
        res = run("masked-lm", opts, "random", 8, batch_size=4, evaluator=ev)
    finally:
        ev.close()
    assert res.n_evaluations == 8
    assert pairs(res) == pairs(local) and front(res) == front(local)


@pytest.mark.parametrize("how", ["fault in the actor mid-batch", "ray.kill between batches"])
def test_an_actor_that_dies_mid_run_loses_nothing_and_counts_nothing_twice(how, tmp_path, monkeypatch):
    opts = {**MNK, "cost_seconds": 0.01}
    local = run("rho-mnk", opts, "random", 30)
    if how.startswith("fault"):
        # the first actor gets HEADREPAIR_FAULT and kills itself with its 2nd batch computed, before returning it
        monkeypatch.setenv("HEADREPAIR_FAULT", "worker:2")
    ev = RayEvaluator("rho-mnk", opts, workers=2)
    monkeypatch.delenv("HEADREPAIR_FAULT", raising=False)
    killed = []

    def kill_first_actor(state):
        if how.startswith("ray.kill") and not killed:
            killed.append(ev.actors()[0])
            ray.kill(killed[0])

    try:
        res = run("rho-mnk", opts, "random", 30, evaluator=ev, store=EvaluationStore(tmp_path / "s.sqlite"),
                  callbacks=[kill_first_actor])
    finally:
        ev.close()
    assert ev.n_restarts == 1 and ev.n_retried >= 1, (ev.n_restarts, ev.n_retried)
    assert res.n_evaluations == 30 and res.n_cache_hits == 0
    assert pairs(res) == pairs(local) and front(res) == front(local)
    rows = store_rows(tmp_path / "s.sqlite")
    assert len(rows) == 30 == len(set(rows))


def test_local_evaluator_is_the_default_and_evaluates_in_order():
    problem = PROBLEMS.create("rho-mnk", **MNK)
    ev = LocalEvaluator()
    ev.bind(problem)
    masks = problem.space.sample(6, np.random.default_rng(0))
    t1, t2 = ev.submit(masks[:3], "search"), ev.submit(masks[3:], "search")
    a, b = ev.next_done(), ev.next_done()
    assert (a.ticket, b.ticket) == (t1, t2)
    np.testing.assert_array_equal(np.vstack([a.values, b.values]), problem.evaluate(masks))


# -------------------------------------------------------------------------------------- benchmarks
SUITE = """
name = "tiny-ray"
budgets = [15]
batch_size = 5
seeds = 2
strategies = ["random", "nsga2"]
[[problems]]
label = "mnk"
name = "rho-mnk"
options = { n_bits = 32, k = 2, seed = 5 }
"""
TIME_COLUMNS = {"wall_time_s", "strategy_time_s", "evaluation_time_s", "evaluation_cost_s"}


def results(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(fh)]


def test_a_benchmark_spread_over_ray_gives_the_serial_results(tmp_path):
    from benchmarks.runner import run_suite
    from benchmarks.suite import load_suite

    (tmp_path / "suite.toml").write_text(SUITE)
    suite = load_suite(str(tmp_path / "suite.toml"))
    run_suite(suite, tmp_path / "serial", progress="off", log=lambda m: None)
    logs = []
    run_suite(suite, tmp_path / "ray", progress="off", log=logs.append, executor="ray", workers=2)
    serial = results(tmp_path / "serial" / "results.csv")
    assert len(serial) == 4 and all(r["n_cache_hits"] == "0" for r in serial)   # no mask shared between cells
    assert results(tmp_path / "ray" / "results.csv") == serial
    assert any("as Ray tasks" in m for m in logs)


# ---------------------------------------------------------------------------------- command line
def cli(*args, cwd: Path, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    env.pop("HEADREPAIR_FAULT", None)
    return subprocess.run([sys.executable, "-m", "framework.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


SYN = ["run", "--problem", "rho-mnk", "--strategy", "random", "--budget", "20", "--batch-size", "4", "--seed", "2",
       "--set", "n_bits=24", "--quiet", "--no-export"]


def test_headrepair_run_on_two_ray_workers_gives_the_local_front(tmp_path):
    local = cli(*SYN, "--out", "local", cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    on_ray = cli(*SYN, "--out", "ray", "--executor", "ray", "--workers", "2", cwd=tmp_path)
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    a = json.loads((tmp_path / "local" / "result.json").read_text())
    b = json.loads((tmp_path / "ray" / "result.json").read_text())
    key = lambda f: json.dumps(f, sort_keys=True)  # noqa: E731
    assert sorted(map(key, b["front"])) == sorted(map(key, a["front"])) and len(a["front"]) >= 2
    assert b["n_evaluations"] == a["n_evaluations"] == 20 and b["hypervolume"] == pytest.approx(a["hypervolume"])
    assert b["config"]["executor"] == "ray" and b["config"]["workers"] == 2


BAD = {
    "--workers 0": (["--executor", "ray", "--workers", "0"], "workers (--workers) must be >= 1, got 0"),
    "--pending 0": (["--executor", "ray", "--pending", "0"], "pending (--pending) must be >= 1, got 0"),
    "--workers without ray": (["--workers", "2"], "--workers only apply to --executor ray"),
    "unreachable --address": (["--executor", "ray", "--address", "127.0.0.1:1"],
                              "--address '127.0.0.1:1' is unreachable"),
    "malformed --address": (["--executor", "ray", "--address", "headnode"], "expected HOST:PORT"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_executor_settings_end_with_one_line(case, tmp_path):
    extra, needle = BAD[case]
    proc = cli(*SYN, "--out", "x", *extra, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "x").exists()


def test_executor_ray_without_ray_installed_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from framework.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, *SYN, "--out", "x", "--executor", "ray"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("headrepair run: error: --executor ray needs Ray, which is not installed: "
                                   "pip install 'headrepair[ray]' (or ray==2.60.0)")


def test_bench_with_ray_refuses_jobs(tmp_path):
    proc = cli("bench", "--suite", "smoke", "--out", "b", "--executor", "ray", "--jobs", "2", cwd=tmp_path,
               timeout=60)
    assert proc.returncode == 2 and "drop --jobs" in proc.stderr and not (tmp_path / "b").exists(), proc.stderr


def test_a_run_killed_on_the_local_executor_resumes_on_ray_workers(tmp_path):
    """resume keeps the run's executor, or takes another: it changes no value, so the resumed run
    ends with the uninterrupted run's evaluations, paying nothing twice."""
    whole = cli(*SYN, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = subprocess.run([sys.executable, "-m", "framework.cli", *SYN, "--out", "k"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300, env={**os.environ, "HEADREPAIR_FAULT": "evaluate:3"})
    assert killed.returncode == -9, killed.stderr[-2000:]             # SIGKILL in its 3rd evaluation
    resumed = cli("resume", "k", "--executor", "ray", "--workers", "2", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "whole" / "result.json").read_text())
    b = json.loads((tmp_path / "k" / "result.json").read_text())
    key = lambda f: json.dumps(f, sort_keys=True)  # noqa: E731
    assert sorted(map(key, b["front"])) == sorted(map(key, a["front"]))
    assert b["n_evaluations"] == 20 and b["n_resumed"] == 8 and b["n_cache_hits"] == 0
    assert b["config"]["executor"] == "ray"
    assert json.loads((tmp_path / "k" / "run.json").read_text())["executor"] == "local"   # the run's own settings
    rows = store_rows(tmp_path / "k" / "evaluations.sqlite")
    assert len(rows) == 20 == len(set(rows))
