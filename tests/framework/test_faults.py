"""Faults and determinism, on real processes and real SQLite stores.

Each kill happens at a point the test chooses (``HEADREPAIR_FAULT=POINT:N``, framework/faults.py:
the process sends itself SIGKILL the N-th time it reaches POINT): inside a real evaluation (after
the problem computed, before the store commits), inside the store's write transaction (before
COMMIT), inside surrogate-sa's model fit.  After ``headrepair resume`` (or rerunning ``headrepair
bench``) no committed evaluation is lost, none is paid twice (counted where the problem computes,
not by the loop's own bookkeeping), and the results equal an uninterrupted run's with the same seed.

The runs go through :func:`framework.cli.main` in a fresh interpreter (``DRIVER``), which first
registers the test problems that fail (``flaky-metric``, ``always-fails``) and counts the masks
the synthetic problem evaluates and the sensitivities it computes (written to ``COUNT_FILE`` when
the process exits normally).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r"""
import atexit, json, os, sys
import numpy as np
from framework.registry import PROBLEMS
from objectives.synthetic import RhoMNKProblem

counts = {"masks": 0, "sensitivities": 0}
evaluate, sensitivities = RhoMNKProblem._evaluate, RhoMNKProblem._sensitivities
inside = []

def counted_evaluate(self, masks, split):
    if not inside:   # (the noisy sensitivities evaluate every single flip: not an evaluation of the run)
        counts["masks"] += len(masks)
    return evaluate(self, masks, split)

def counted_sensitivities(self, mask, split):
    counts["sensitivities"] += 1
    inside.append(1)
    try:
        return sensitivities(self, mask, split)
    finally:
        inside.pop()

RhoMNKProblem._evaluate, RhoMNKProblem._sensitivities = counted_evaluate, counted_sensitivities

class FlakyMetric(RhoMNKProblem):
    '''A metric that raises for a batch holding a mask with head 0 pruned, and is infinite for a mask
    with head 1 pruned.'''
    name = "flaky-metric"

    def _evaluate(self, masks, split):
        if (~masks[:, 0]).any():
            raise ValueError("metric exploded: head 0 pruned")
        y = super()._evaluate(masks, split)
        y[~masks[:, 1], 0] = np.inf
        return y

class AlwaysFails(RhoMNKProblem):
    name = "always-fails"

    def _evaluate(self, masks, split):
        if os.environ.get("FAIL_WITH") == "nan":
            return np.full((len(masks), self.n_objectives), np.nan)
        raise ValueError("no metric today")

PROBLEMS.register("flaky-metric", FlakyMetric)
PROBLEMS.register("always-fails", AlwaysFails)
if os.environ.get("COUNT_FILE"):
    atexit.register(lambda: open(os.environ["COUNT_FILE"], "w").write(json.dumps(counts)))
from framework.cli import main
sys.exit(main(sys.argv[1:]))
"""

# surrogate-sa on a synthetic problem, cheap settings: a design of 8 masks (2 batches), then one
# model fit per batch of 4
SYN = ["--problem", "rho-mnk", "--budget", "24", "--batch-size", "4", "--seed", "11", "--quiet", "--no-export",
       "--set", "n_bits=30", "--set", "k=2", "--set", "problem.seed=2", "--strategy", "surrogate-sa",
       "--set", "n_chains=4", "--set", "n_steps=30"]
SENS = ["--set", "sensitivity_noise=0.5"]   # the strategy spends its first budget unit on head sensitivities
# result.json keys that hold times or the run's id
TIME_KEYS = {"wall_time_s", "strategy_time_s", "evaluation_time_s", "evaluation_cost_s", "run_id"}


def headrepair(*args: object, fault: str | None = None, count: Path | None = None,
               env: dict | None = None, wait: bool = True):
    """``headrepair ARGS`` in a fresh interpreter (through ``DRIVER``); a ``CompletedProcess``, or the
    ``Popen`` with ``wait=False``."""
    e = {k: v for k, v in os.environ.items() if k not in ("HEADREPAIR_FAULT", "COUNT_FILE", "FAIL_WITH")}
    e.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})})
    if fault:
        e["HEADREPAIR_FAULT"] = fault
    if count:
        e["COUNT_FILE"] = str(count)
    cmd = [sys.executable, "-c", DRIVER, *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=e)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=e, timeout=900)


def ok(proc) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return proc


def killed(proc) -> subprocess.CompletedProcess:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    return proc


def rows(store: Path, table: str = "evaluations") -> list[tuple]:
    db = sqlite3.connect(store)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute(f"SELECT * FROM {table} ORDER BY fingerprint, mask").fetchall()
    finally:
        db.close()


def run_files(run: Path) -> dict:
    """What must not differ between two runs of one config and seed: result.json without times and
    run id, every CSV, and every stored evaluation (mask, values, extras, status, reason)."""
    result = {k: v for k, v in json.loads((run / "result.json").read_text()).items()
              if k not in TIME_KEYS and k != "n_resumed"}   # what a resumed run paid before: checked apart
    result.get("strategy_diagnostics", {}).pop("seconds", None)
    for where in ("out", "store", "run_id"):
        result.get("config", {}).pop(where, None)
    texts = {p.name: p.read_text() for p in sorted(run.glob("*.csv"))}
    stored = [r[:7] for r in rows(run / "evaluations.sqlite")]   # fingerprint .. reason (not time, payer)
    return {"result": result, "csv": texts, "stored": stored}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Uninterrupted runs of the fault scenarios' configurations (one each, on demand)."""
    done: dict[str, Path] = {}

    def get(sens: bool) -> Path:
        key = "sens" if sens else "plain"
        if key not in done:
            out = tmp_path_factory.mktemp("clean") / key
            ok(headrepair("run", *SYN, *(SENS if sens else []), "--out", out))
            done[key] = out
        return done[key]

    return get


# ------------------------------------------------------------------------------------------ the hook
def test_fault_specification_is_checked():
    from framework.faults import parse_faults

    assert parse_faults("evaluate:3, fit:1") == {"evaluate": 3, "fit": 1}
    assert parse_faults(None) == {} and parse_faults("") == {}
    for bad in ("evaluate", "evaluate:0", "evaluate:x", "explode:1"):
        with pytest.raises(ValueError, match="HEADREPAIR_FAULT: expected POINT:N"):
            parse_faults(bad)
    # a malformed value stops the process at once instead of running without its fault
    proc = headrepair("list", fault="comit:1")
    assert proc.returncode != 0 and "HEADREPAIR_FAULT" in proc.stderr


# ------------------------------------------------------------------------------ SIGKILL, then resume
SCENARIOS = {
    # name: (fault, sensitivities, evaluations committed when killed, sensitivity calls committed)
    "during an evaluation": ("evaluate:4", False, 12, 0),      # batch 4 computed, not committed
    "during the store commit": ("commit:4", False, 12, 0),     # inside batch 4's transaction
    "during the surrogate fit": ("fit:2", False, 12, 0),       # design (2 batches) + 1 round, then the 2nd fit
    "during a sensitivities commit": ("commit:1", True, 0, 0),
    "during a commit after sensitivities": ("commit:3", True, 4, 1),  # sensitivities, batch 1, then batch 2
}


@pytest.mark.slow   # surrogate-sa in fresh interpreters: 20-60 s
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sigkill_at_a_chosen_point_then_resume_equals_uninterrupted(scenario, tmp_path, clean):
    fault, sens, committed, sens_committed = SCENARIOS[scenario]
    run = tmp_path / "run"
    extra = SENS if sens else []
    killed(headrepair("run", *SYN, *extra, "--out", run, fault=fault))
    assert (run / "run.json").is_file() and not (run / "result.json").exists()
    store = run / "evaluations.sqlite"
    before = rows(store)   # integrity checked: a kill inside a transaction leaves no trace of it
    assert len(before) == committed
    assert len(rows(store, "sensitivities")) == sens_committed
    assert len(rows(store, "trials")) <= committed

    count = tmp_path / "count.json"
    ok(headrepair("resume", run, "--quiet", count=count))
    paid = json.loads(count.read_text())
    res = json.loads((run / "result.json").read_text())
    n_evaluations = 24 - (1 if sens else 0)
    # none paid twice: the resumed process computed exactly what had not been committed
    assert paid == {"masks": n_evaluations - committed, "sensitivities": (1 if sens else 0) - sens_committed}
    # none lost: every committed row is still there, unchanged, and the run received each of them
    after = rows(store)
    assert [r for r in after if r in before] == before and len(after) == n_evaluations
    assert res["n_evaluations"] == n_evaluations and res["n_resumed"] == committed and res["n_cache_hits"] == 0
    uninterrupted = clean(sens)
    ref = json.loads((uninterrupted / "result.json").read_text())
    assert res["front"] == ref["front"] and res["hv_curve"] == ref["hv_curve"]
    assert run_files(run) == run_files(uninterrupted)   # every evaluation, in the same order, the same values


# --------------------------------------------------------------------------------------------- bench
SUITE = """
name = "faults"
budgets = [12]
batch_size = 4
seeds = 2
strategies = ["random", "surrogate-sa"]
[strategy_options.surrogate-sa]
n_chains = 4
n_steps = 30
min_initial = 4
[[problems]]
label = "mnk"
name = "rho-mnk"
options = { n_bits = 30, k = 2, seed = 2 }
"""
BENCH_TIME_COLUMNS = {"wall_time_s", "strategy_time_s", "evaluation_time_s", "evaluation_cost_s"}


def _results(out: Path) -> list[dict]:
    """results.csv without its time columns (the only ones that may differ)."""
    return [{k: v for k, v in r.items() if k not in BENCH_TIME_COLUMNS}
            for r in csv.DictReader(io.StringIO((out / "results.csv").read_text()))]


@pytest.mark.slow   # surrogate-sa in fresh interpreters: 20-60 s
def test_bench_killed_mid_cell_resumes_only_the_unfinished_cell(tmp_path):
    suite = tmp_path / "faults.toml"
    suite.write_text(SUITE)
    bench, clean = tmp_path / "bench", tmp_path / "clean"
    # cells run in order: random s0, random s1, surrogate-sa s0, surrogate-sa s1; each random cell
    # pays 3 batches, so the 8th evaluation is surrogate-sa s0's second batch
    killed(headrepair("bench", "--suite", suite, "--out", bench, "--quiet", fault="evaluate:8"))
    cells = sorted((bench / "cells").glob("*.json"))
    assert [c.stem for c in cells] == ["mnk__b12__random__s0", "mnk__b12__random__s1"]
    finished = {c: (c.read_bytes(), c.stat().st_mtime_ns) for c in cells}
    store = bench / "stores" / "mnk.sqlite"
    db = sqlite3.connect(store)
    committed = db.execute("SELECT COUNT(*) FROM evaluations WHERE run_id = 'bench-mnk__b12__surrogate-sa__s0'"
                           ).fetchone()[0]
    db.close()
    assert committed == 4   # its first batch; the second was computed, not committed

    proc = ok(headrepair("bench", "--suite", suite, "--out", bench, "--quiet"))
    assert "4 cells, 2 already done, 2 to run" in proc.stdout
    assert {c: (c.read_bytes(), c.stat().st_mtime_ns) for c in cells} == finished   # not rerun
    record = json.loads((bench / "cells" / "mnk__b12__surrogate-sa__s0.json").read_text())
    assert record["n_resumed"] == committed and record["n_evaluations"] == 12

    ok(headrepair("bench", "--suite", suite, "--out", clean, "--quiet"))
    assert _results(bench) == _results(clean) and len(_results(bench)) == 4
    assert len(rows(store)) == len(rows(clean / "stores" / "mnk.sqlite"))


# ----------------------------------------------------------------------------------- failed evaluations
FLAKY = ["run", "--problem", "flaky-metric", "--strategy", "surrogate-sa", "--budget", "24", "--batch-size", "4",
         "--seed", "3", "--quiet", "--no-export", "--set", "n_bits=12", "--set", "k=1", "--set", "problem.seed=0",
         "--set", "n_chains=4", "--set", "n_steps=30"]


@pytest.mark.slow   # surrogate-sa in fresh interpreters: 20-60 s
def test_a_metric_that_raises_or_is_infinite_for_a_mask_is_a_failed_evaluation_and_the_run_goes_on(tmp_path):
    from framework.history import unpack_mask
    from framework.registry import PROBLEMS

    run = tmp_path / "run"
    ok(headrepair(*FLAKY, "--out", run))
    res = json.loads((run / "result.json").read_text())
    assert res["n_evaluations"] == 24 and res["stop_reason"] == "budget"
    stored = rows(run / "evaluations.sqlite")
    truth = PROBLEMS.create("rho-mnk", n_bits=12, k=1, seed=0)
    raised = infinite = good = 0
    for _, blob, n_bits, objectives, _, status, reason, *_ in stored:
        mask = unpack_mask(blob, n_bits)
        if not mask[0]:     # raised (in its batch, then alone): failed with the exception as its reason
            raised += 1
            assert (status, reason, objectives) == ("failed", "ValueError: metric exploded: head 0 pruned",
                                                    "[null, null]")
        elif not mask[1]:   # an infinite value: failed, the reason names the objective
            infinite += 1
            assert (status, reason) == ("failed", "non-finite objective: one_minus_f1=inf")
        else:               # its batch-mates kept their own, right values
            good += 1
            assert status == "ok" and reason is None
            assert json.loads(objectives) == truth.evaluate(mask[None])[0].tolist()
    assert raised and infinite and good and res["n_failed"] == raised + infinite
    assert "failed" in (run / "report.md").read_text()


@pytest.mark.parametrize("how", ["raise", "nan"])
def test_a_problem_whose_every_evaluation_fails_stops_with_one_line_and_an_intact_store(tmp_path, how):
    from framework.loop import MAX_FAILURES

    run = tmp_path / "run"
    args = ["run", "--problem", "always-fails", "--strategy", "random", "--budget", "40", "--batch-size", "4",
            "--quiet", "--set", "n_bits=12", "--out", run]
    proc = headrepair(*args, env={"FAIL_WITH": how})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    reason = ("ValueError: no metric today" if how == "raise"
              else "non-finite objective: one_minus_f1=nan, one_minus_f2=nan")
    assert lines == [f"headrepair run: error: stopped after 12 failed evaluations in a row (12 of 12 failed so far; "
                     f"the last: {reason}); every evaluation is kept in the store {run / 'evaluations.sqlite'}: fix "
                     "the problem or its settings, then start a new run"]
    # bounded: checked after each batch of 4, so at most MAX_FAILURES + 3 are paid
    assert MAX_FAILURES == 10
    stored = rows(run / "evaluations.sqlite")
    assert len(stored) == 12 and {(r[5], r[6]) for r in stored} == {("failed", reason)}
    assert len(rows(run / "evaluations.sqlite", "trials")) == 12 and not (run / "result.json").exists()
    # resuming replays the stored failures (none paid again) and stops the same way
    count = tmp_path / "count.json"
    again = headrepair("resume", run, "--quiet", count=count, env={"FAIL_WITH": how})
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [lines[0].replace("run:", "resume:", 1)]
    assert len(rows(run / "evaluations.sqlite")) == 12


def test_a_batch_that_raises_is_evaluated_mask_by_mask():
    from framework.evaluators import evaluate_guarded
    from framework.problem import Problem
    from framework.space import HeadSpace

    class RaisesOnHeadZero(Problem):
        name = "raises"

        def __init__(self):
            self.space = HeadSpace.binary(4)
            self.objective_names = ("a", "b")
            self.ref_point = np.array([5.0, 5.0])
            self.bounds = np.array([[0.0, 0.0], [4.0, 4.0]])
            self.calls = []

        def _evaluate(self, masks, split):
            self.calls.append(len(masks))
            if (~masks[:, 0]).any():
                raise RuntimeError("boom\nsecond line")
            return np.stack([masks.sum(1), (~masks).sum(1)], 1).astype(float)

        def describe(self):
            return {}

    p = RaisesOnHeadZero()
    masks = np.array([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=bool)
    values, infos, reasons, seconds = evaluate_guarded(p, masks, "search")
    assert p.calls == [3, 1, 1, 1] and len(infos) == 3 and len(seconds) == 3 and min(seconds) >= 0
    assert reasons == [None, "RuntimeError: boom second line", None]
    np.testing.assert_array_equal(values[[0, 2]], [[3, 1], [3, 1]])
    assert np.isnan(values[1]).all()


# ------------------------------------------------------------------------------ two runs, one store
def test_two_processes_writing_one_store_lose_and_duplicate_nothing(tmp_path):
    """Two runs with --store on one file, started together while a third connection holds the
    store's write lock for longer than SQLite's default 5 s busy timeout: both wait, then write
    interleaved; both finish with the result they have alone (same seed: the same masks, so they
    race to pay the same ones), and the store holds every mask once."""
    from framework.config import RunConfig
    from framework.runs import start_run
    from framework.store import EvaluationStore

    shared = tmp_path / "shared.sqlite"
    EvaluationStore(shared).close()           # an empty store (WAL journal)
    args = ["--problem", "rho-mnk", "--strategy", "random", "--budget", "60", "--batch-size", "3", "--seed", "5",
            "--quiet", "--no-export", "--set", "n_bits=40", "--set", "k=2", "--store", shared]
    lock = sqlite3.connect(shared, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    procs = [headrepair("run", *args, "--out", tmp_path / name, wait=False) for name in ("a", "b")]
    time.sleep(7)
    assert all(p.poll() is None for p in procs)   # waiting on the lock, not failed
    lock.execute("COMMIT")
    lock.close()
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]

    alone = tmp_path / "alone"
    start_run(RunConfig(problem="rho-mnk", strategy="random", budget=60, batch_size=3, seed=5, out=str(alone),
                        export=False, problem_options={"n_bits": 40, "k": 2}), progress=False, log=lambda s: None)
    ref = json.loads((alone / "result.json").read_text())
    hits = 0
    db = sqlite3.connect(shared)
    for name in ("a", "b"):
        res = json.loads((tmp_path / name / "result.json").read_text())
        assert res["front"] == ref["front"] and res["hv_curve"] == ref["hv_curve"] and res["n_evaluations"] == 60
        hits += res["n_cache_hits"]
        # every mask the run received is in the store, once
        n = db.execute("SELECT COUNT(*), COUNT(e.mask) FROM trials t LEFT JOIN evaluations e "
                       "ON t.fingerprint = e.fingerprint AND t.mask = e.mask WHERE t.run_id = ?",
                       (res["run_id"],)).fetchone()
        assert n == (60, 60)
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT mask) FROM evaluations").fetchone() == (60, 60)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert hits <= 60   # what one paid the other received from the store (how many depends on timing)


# ----------------------------------------------------------------------------------- store schema
V1_DROP = "DROP TABLE sensitivities; DROP TABLE sensitivity_trials; PRAGMA user_version = 0;"


def test_a_store_of_the_first_schema_is_migrated_and_its_evaluations_reused(tmp_path):
    """Schema 1 (the first release: problems, evaluations, trials; no version recorded) gains the
    sensitivity tables when opened; its evaluations serve a new run as cache hits."""
    from framework.loop import optimize
    from framework.registry import PROBLEMS, STRATEGIES
    from framework.store import SCHEMA_VERSION, EvaluationStore, check_store

    old = tmp_path / "old.sqlite"
    problem = PROBLEMS.create("rho-mnk", n_bits=16, k=1, seed=0)
    with EvaluationStore(old) as store:
        optimize(problem, STRATEGIES.create("random"), 8, batch_size=4, seed=2, store=store)
    db = sqlite3.connect(old)
    db.executescript(V1_DROP)
    db.close()
    before = rows(old)
    assert check_store(old) == 1
    run = tmp_path / "run"
    ok(headrepair("run", "--problem", "rho-mnk", "--strategy", "random", "--budget", "8", "--batch-size", "4",
                  "--seed", "2", "--quiet", "--set", "n_bits=16", "--set", "k=1", "--store", old, "--out", run))
    res = json.loads((run / "result.json").read_text())
    assert res["n_cache_hits"] == 8 and rows(old) == before
    db = sqlite3.connect(old)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"sensitivities", "sensitivity_trials"} <= {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    db = sqlite3.connect(old)
    db.executescript(V1_DROP)
    db.close()
    with EvaluationStore(old) as store:
        assert store.migrated_from == 1 and store.count() == 8
    with EvaluationStore(old) as store:
        assert store.migrated_from is None


# ------------------------------------------------------------------------------------- determinism
@pytest.mark.slow   # surrogate-sa in fresh interpreters: 20-60 s
def test_same_config_and_seed_give_the_same_run_in_two_processes_synthetic(tmp_path, clean):
    again = tmp_path / "again"
    ok(headrepair("run", *SYN, "--out", again))
    assert run_files(again) == run_files(clean(False))


def _tiny_files(root: Path) -> tuple[Path, Path]:
    from objectives.masked_lm.tiny import CORPUS_WORDS, save_tiny_llama

    model = save_tiny_llama(root / "tiny")
    rng = np.random.default_rng(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(CORPUS_WORDS, 80)) for _ in range(12)))
    return model, corpus


def _masked_lm_twice(tmp_path: Path, *sets: str) -> None:
    args = ["--budget", "6", "--batch-size", "3", "--seed", "1", "--quiet", "--no-export", "--max-cost", "100",
            "--set", "n_chains=4", "--set", "n_steps=30", "--set", "device=cpu", "--set", "dtype=float32"]
    for s in sets:
        args += ["--set", s]
    a, b = tmp_path / "a", tmp_path / "b"
    ok(headrepair("run", *args, "--out", a))
    ok(headrepair("run", *args, "--out", b))
    assert run_files(a) == run_files(b)
    assert json.loads((a / "result.json").read_text())["n_sensitivity_calls"] == 1   # the gradients too
    for name in ("chosen_mask.json", "heldout.json"):   # validation and held-out figures of the pick
        assert (a / name).read_text() == (b / name).read_text()
    def sensitivities(run: Path) -> list:
        out = []
        for r in rows(run / "evaluations.sqlite", "sensitivities"):
            payload = json.loads(r[3])
            payload["info"].pop("seconds", None)   # how long the backward pass took
            out.append((*r[:3], payload))
        return out

    assert sensitivities(a) == sensitivities(b) and len(sensitivities(a)) == 1


@pytest.mark.slow   # surrogate-sa in fresh interpreters: 20-60 s
def test_same_config_and_seed_give_the_same_run_in_two_processes_tiny_model(tmp_path):
    model, corpus = _tiny_files(tmp_path)
    _masked_lm_twice(tmp_path, f"model={model}", f"corpus={corpus}", "window=32", "stride=16", "n_windows=3",
                     "n_boot=20", "max_pruned_fraction=0.5", "n_pronoun_occupations=4", "n_pronoun_templates=2")


@pytest.mark.slow
@pytest.mark.embedded
def test_same_config_and_seed_give_the_same_run_in_two_processes_embedded_model(tmp_path):
    tiny = {"n_pronoun_occupations": 6, "n_pronoun_templates": 3, "n_windows": 2, "window": 64, "stride": 32,
            "n_boot": 20}   # the sizes of tests/test_main_job.py
    _masked_lm_twice(tmp_path, *(f"{k}={v}" for k, v in tiny.items()))
