"""Bad input, through the real command line (a subprocess each): one line on stderr that names the
input and what was expected, a non-zero exit status, no traceback (``--debug`` shows it), and
nothing written: no run directory, no change to an existing run or store.

Every row of the README's "Bad input" table is one of these cases."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# a cheap synthetic run: 10 bits, 6 evaluations
SYN = ["run", "--problem", "rho-mnk", "--strategy", "random", "--budget", "6", "--batch-size", "3",
       "--set", "n_bits=10", "--quiet"]


def cli(*args: object, env_extra: dict | None = None, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env_extra or {})}
    if cache is not None:
        env["HEADREPAIR_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "framework.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def one_line(proc: subprocess.CompletedProcess, *needles: str, rc: int = 2) -> str:
    """Assert the exit status, exactly one line on stderr holding every needle, and no traceback."""
    assert proc.returncode == rc, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (to show that nothing changed).  SQLite's ``-shm``
    file is left out: it is the shared-memory index of the write-ahead log, which any reader of a
    store rebuilds after a crash; the data (the store and its log) are compared."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


# ------------------------------------------------------------------------------------ run options
RUN_CASES = {
    "unknown problem": (["--problem", "rho-mkn"], ["unknown problem 'rho-mkn'", "did you mean 'rho-mnk'?"]),
    "unknown strategy": (["--strategy", "randon"], ["unknown strategy 'randon'", "did you mean 'random'?"]),
    "unknown surrogate": (["--strategy", "surrogate-sa", "--set", "surrogate=mpl"],
                          ["unknown surrogate 'mpl'", "did you mean 'mlp'?"]),
    "mistyped --set key": (["--set", "n_bit=5"], ["option 'n_bit' is not an option", "did you mean 'n_bits'?"]),
    "mistyped --set problem.key": (["--set", "problem.n_bitz=5"],
                                   ["problem 'rho-mnk' has no option 'n_bitz'", "did you mean 'n_bits'?"]),
    "--set value of the wrong type": (["--set", "n_bits=abc"],
                                      ["option 'n_bits' of problem 'rho-mnk' expects an int, got 'abc'"]),
    "--set float for an int": (["--set", "k=2.5"], ["option 'k' of problem 'rho-mnk' expects an int, got 2.5"]),
    "--set without =": (["--set", "n_bits"], ["--set expects key=value, got 'n_bits'"]),
    "budget 0": (["--budget", "0"], ["budget (--budget) must be >= 1, got 0"]),
    "negative budget": (["--budget", "-5"], ["budget (--budget) must be >= 1, got -5"]),
    "batch size 0": (["--batch-size", "0"], ["batch_size (--batch-size) must be >= 1, got 0"]),
    "flag of the wrong type": (["--seed", "abc"], ["argument --seed: invalid int value: 'abc'"]),
    "negative max cost": (["--max-cost", "-1"], ["max_cost (--max-cost) must be >= 0"]),
    "pruned fraction 0": (["--set", "max_pruned_fraction=0"],
                          ["option 'max_pruned_fraction' of problem 'rho-mnk' must be in (0, 1]", "got 0"]),
    "pruned fraction above 1": (["--set", "max_pruned_fraction=1.5"], ["must be in (0, 1]", "got 1.5"]),
    "pruned fraction rounding to no head": (["--set", "max_pruned_fraction=0.05"],
                                            ["leaves no head to prune", "max_pruned_fraction=0.05 of 10 heads "
                                             "rounds down to 0"]),
    "every head protected": (["--set", f"protected={list(range(10))}"],
                             ["problem 'rho-mnk' leaves no head to prune: all 10 heads are protected"]),
    "protected head out of range": (["--set", "protected=[3, 12]"],
                                    ["protected head indices out of range [0, 10): [12]"]),
    "negative protected head": (["--set", "protected=[-1]"], ["option 'protected'", "got -1"]),
    "--device on a problem without one": (["--device", "cuda"],
                                          ["problem 'rho-mnk' has no option 'device'"]),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_option_is_one_line_and_writes_nothing(case, tmp_path):
    extra, needles = RUN_CASES[case]
    out = tmp_path / "out"
    one_line(cli(*SYN, *extra, "--out", out), *needles)
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    for where in (["--debug", *SYN], [*SYN, "--debug"]):  # before or after the command
        proc = cli(*where, "--problem", "rho-mkn", "--out", tmp_path / "out")
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "rho-mkn" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_unexpected_error_is_one_line_too_with_exit_status_1(monkeypatch, capsys):
    """Not bad input but a bug (here: a command that raises RuntimeError): one line that says so."""
    import framework.cli

    def broken(args):
        raise RuntimeError("something broke\non two lines")

    monkeypatch.setattr(framework.cli, "_cmd_list", broken)
    assert framework.cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("headrepair list: error: RuntimeError: something broke on two lines (unexpected; rerun "
                           "with --debug for the traceback)")
    with pytest.raises(RuntimeError):
        framework.cli.main(["list", "--debug"])


def test_store_that_is_not_a_store(tmp_path):
    store = tmp_path / "notes.txt"
    store.write_text("not a database")
    one_line(cli(*SYN, "--store", store, "--out", tmp_path / "out"), f"--store '{store}' is not an SQLite "
                                                                      "evaluation store")
    assert not (tmp_path / "out").exists() and store.read_text() == "not a database"


def _sqlite(path: Path, script: str) -> Path:
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript(script)
    db.close()
    return path


EMPTY = hashlib.sha256(b"").hexdigest()
STORE_CASES = {
    "another program's database": (
        "CREATE TABLE users (name TEXT, email TEXT); INSERT INTO users VALUES ('ada', 'ada@example.org');",
        ["is an SQLite database but not an evaluation store (it holds the tables users; an evaluation store has "
         "problems, evaluations, trials, sensitivities, sensitivity_trials); choose another file"]),
    "a table of another shape": (
        "CREATE TABLE evaluations (mask BLOB, value REAL); CREATE TABLE trials (run_id TEXT);",
        ["is not an evaluation store of a known schema: its table 'evaluations' has the columns ['mask', 'value'], "
         "expected ['fingerprint', 'mask', "]),
    "a store of a newer schema": (
        None,   # a real store whose version is set past this one's
        ["is an evaluation store of schema 99, written by a newer headrepair; this one reads schemas 1 to 2: "
         "upgrade headrepair or choose another store"]),
}


@pytest.mark.parametrize("case", list(STORE_CASES))
def test_store_that_this_version_cannot_use(tmp_path, case):
    """A --store that is an SQLite file but not an evaluation store this version can use is refused
    before anything is written: the file keeps every byte (a store of an older schema is migrated
    instead: tests/framework/test_faults.py)."""
    script, needles = STORE_CASES[case]
    store = tmp_path / "other.sqlite"
    if script is None:
        from framework.store import EvaluationStore

        EvaluationStore(store).close()
        script = "PRAGMA user_version = 99;"
    _sqlite(store, script)

    def data() -> dict[str, str]:   # a read-only look at a WAL database may leave an empty -wal beside it
        return {k: v for k, v in digest(tmp_path).items() if not (k.endswith("-wal") and v == EMPTY)}

    before = data()
    one_line(cli(*SYN, "--store", store, "--out", tmp_path / "out"), f"--store '{store}' ", *needles)
    assert data() == before and not (tmp_path / "out").exists()
    from framework.store import EvaluationStore, StoreError

    with pytest.raises(StoreError, match=re.escape(f"evaluation store '{store}' ")):   # the Python API too
        EvaluationStore(store)
    assert data() == before


def test_bench_unknown_suite_and_strategy(tmp_path):
    out = tmp_path / "bench"
    one_line(cli("bench", "--suite", "smok", "--out", out), "no suite 'smok'; did you mean 'smoke'?")
    one_line(cli("bench", "--suite", "smoke", "--strategies", "randon", "--out", out),
             "this suite has no strategies ['randon']; did you mean 'random'?")
    assert not out.exists()


# ----------------------------------------------------------------------------------- config files
CONFIG_CASES = {  # "{cfg}": the config file's path
    "unknown TOML key": ("c.toml", 'problem = "rho-mnk"\nbudgit = 5\n',
                         ["config file '{cfg}': unknown key 'budgit'", "did you mean 'budget'?"]),
    "unknown YAML key": ("c.yaml", "problem: rho-mnk\nbatchsize: 5\n",
                         ["config file '{cfg}': unknown key 'batchsize'", "did you mean 'batch_size'?"]),
    "TOML value of the wrong type": ("c.toml", 'problem = "rho-mnk"\nbudget = "ten"\n',
                                     ["config file '{cfg}': key 'budget' expects an int, got 'ten'"]),
    "malformed TOML": ("c.toml", 'problem = "rho-mnk\nbudget = 5\n',
                       ["config file '{cfg}' is not valid TOML", "line 1"]),
    "malformed YAML": ("c.yaml", "problem: rho-mnk\nbudget: [5\n", ["config file '{cfg}' is not valid YAML",
                                                                   "line 3"]),
    "mistyped option in [set]": ("c.toml", 'problem = "rho-mnk"\n[set]\nn_bitz = 10\n',
                                 ["option 'n_bitz' is not an option", "did you mean 'n_bits'?"]),
    "option of the wrong type in set": ("c.yaml", "problem: rho-mnk\nset:\n  n_bits: ten\n",
                                        ["option 'n_bits' of problem 'rho-mnk' expects an int, got 'ten'"]),
    "set that is not a table": ("c.yaml", "problem: rho-mnk\nset: 5\n",
                                ["config file '{cfg}': 'set' must be a table of options"]),
    "not a table of settings": ("c.json", "[1, 2]", ["config file '{cfg}' must hold a table of settings, not list"]),
    "unknown file type": ("c.txt", "budget = 5", ["config file '{cfg}': use .toml, .yaml/.yml or .json"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_file_is_one_line_and_writes_nothing(case, tmp_path):
    name, text, needles = CONFIG_CASES[case]
    cfg = tmp_path / name
    cfg.write_text(text)
    out = tmp_path / "out"
    one_line(cli("run", "--config", cfg, "--strategy", "random", "--out", out, "--quiet"),
             *(n.replace("{cfg}", str(cfg)) for n in needles))
    assert not out.exists()


def test_missing_config_file(tmp_path):
    one_line(cli("run", "--config", tmp_path / "none.toml", "--out", tmp_path / "out"),
             f"config file '{tmp_path / 'none.toml'}' does not exist")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- resume and --out
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = cli(*SYN, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


KILLER = """
import os, signal, sys
from framework.config import RunConfig
from framework.runs import start_run
cfg = RunConfig(problem="rho-mnk", strategy="random", budget=12, batch_size=3, seed=1, out=sys.argv[1],
                problem_options={"n_bits": 10}, export=False)
def die(state):
    if state.n_evaluations >= 6:
        os.kill(os.getpid(), signal.SIGKILL)
start_run(cfg, progress=False, callbacks=[die])
"""


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    one_line(cli("resume", tmp_path), f"{tmp_path} is not a run directory (no run.json)")
    one_line(cli("resume", tmp_path / "missing"), f"{tmp_path / 'missing'} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_resume_of_a_damaged_run_json(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    one_line(cli("resume", tmp_path), f"{tmp_path / 'run.json'} is not valid JSON")


def test_resume_of_a_finished_run_is_a_no_op_that_says_so(finished_run):
    before = digest(finished_run)
    proc = cli("resume", finished_run)
    one_line(proc, f"{finished_run} is a finished run (6 of 6 budget units spent); nothing to resume", rc=0)
    assert f"run directory: {finished_run}" in proc.stdout
    assert digest(finished_run) == before


def test_run_into_a_directory_that_holds_a_run_is_refused(finished_run):
    before = digest(finished_run)
    one_line(cli(*SYN, "--out", finished_run), f"{finished_run} already holds a run",
             f"`headrepair resume {finished_run}`")
    assert digest(finished_run) == before


def test_resume_after_the_problem_settings_changed_is_refused(tmp_path):
    run = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(run)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and not (run / "result.json").exists(), proc.stderr  # interrupted mid-run
    settings = json.loads((run / "run.json").read_text())
    settings["problem_options"]["rho"] = 0.5  # the metric settings changed since the run began
    (run / "run.json").write_text(json.dumps(settings))
    before = digest(run)
    one_line(cli("resume", run), f"refusing to resume {run}: the problem's settings changed", "rho: 0.0 -> 0.5")
    assert digest(run) == before
    # with the settings restored it continues (the refusal changed nothing)
    settings["problem_options"].pop("rho")
    (run / "run.json").write_text(json.dumps(settings))
    proc = cli("resume", run, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "result.json").read_text())["n_evaluations"] == 12


# ------------------------------------------------------------------------- masked-lm: models and data
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Tiny models (a Llama that masks, a BertModel that is no causal LM, a Bloom that no adapter
    knows), corpora and HolisticBias directories; no download."""
    import shutil

    import numpy as np
    from transformers import BertConfig, BertModel, BloomConfig, BloomForCausalLM

    from objectives.masked_lm.tiny import CORPUS_WORDS, save_tiny_llama

    root = tmp_path_factory.mktemp("masked-lm-files")
    tiny = save_tiny_llama(root / "tiny")
    vocab = json.loads((tiny / "config.json").read_text())["vocab_size"]
    BertModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(root / "bert")
    BloomForCausalLM(BloomConfig(vocab_size=vocab, hidden_size=32, n_layer=2, n_head=4)).save_pretrained(root / "bloom")
    for name in ("bert", "bloom"):
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tiny / f, root / name / f)
    rng = np.random.default_rng(0)
    (root / "corpus.txt").write_text("\n\n".join(" ".join(rng.choice(CORPUS_WORDS, 80)) for _ in range(12)))
    (root / "short.txt").write_text("c1 c2 c3\n\nc4 c5\n\nc6 c7")
    (root / "hb_empty").mkdir()
    bad = root / "hb_bad"
    bad.mkdir()
    (bad / "descriptors.json").write_text('{"gender_and_sex": 5}')
    (bad / "nouns.json").write_text("{}")
    (bad / "sentence_templates.json").write_text("[]")
    (root / "mask3.json").write_text("[1, 0, 1]")
    (root / "mask_values.json").write_text("[1, 0, 2, 1, 1, 1, 1, 1]")
    (root / "mask_text.json").write_text("keep everything")
    return {"root": root, "tiny": tiny, "corpus": root / "corpus.txt"}


def ml_args(files: dict[str, Path], *extra: str) -> list[str]:
    return ["run", "--problem", "masked-lm", "--strategy", "random", "--budget", "4", "--batch-size", "2",
            "--quiet", "--no-export", "--set", f"model={files['tiny']}", "--set", f"corpus={files['corpus']}",
            "--set", "window=32", "--set", "stride=16", "--set", "n_windows=3", "--set", "n_boot=20",
            "--set", "max_pruned_fraction=0.5", *extra]


ML_CASES = {
    "unknown bias metric": (["--set", "bias_metric=pronun"],
                            ["bias_metric must be one of", "got 'pronun'; did you mean 'pronoun'?"]),
    "unknown classifier": (["--set", "bias_metric=generation", "--set", "classifier=vadr"],
                           ["classifier must be one of", "got 'vadr'; did you mean 'vader'?"]),
    "unknown axis": (["--set", "bias_metric=likelihood", "--set", "axis=gendr"],
                     ["axis 'gendr' is not in builtin:gender-v1; did you mean 'gender_and_sex'?"]),
    "model path that does not exist": (["--set", "model={root}/nowhere"],
                                       ["model '{root}/nowhere' is neither a model directory"]),
    "directory without a model": (["--set", "model={root}/hb_empty"],
                                  ["model '{root}/hb_empty': cannot read its config.json"]),
    "not a causal LM": (["--set", "model={root}/bert"],
                        ["model '{root}/bert' is not a causal language model (its config.json names BertModel)"]),
    "no adapter finds its attention": (["--set", "model={root}/bloom"],
                                       ["head masking does not support BloomForCausalLM",
                                        "no adapter finds its attention heads"]),
    "empty HolisticBias directory": (["--set", "holistic_bias_dir={root}/hb_empty"],
                                     ["'{root}/hb_empty' is not a HolisticBias v1.1 directory: missing "
                                      "descriptors.json"]),
    "malformed HolisticBias directory": (["--set", "holistic_bias_dir={root}/hb_bad"],
                                         ["'{root}/hb_bad' is not a well-formed HolisticBias v1.1 directory"]),
    "corpus shorter than one window": (["--set", "corpus={root}/short.txt"],
                                       ["corpus '{root}/short.txt' has 3 tokens: room for 0 windows of 32"]),
    "protected head beyond the model": (["--set", "protected=[100]"],
                                        ["protected head indices out of range [0, 8): [100]"]),
}


@pytest.mark.parametrize("case", list(ML_CASES))
def test_bad_masked_lm_input_is_one_line_and_writes_nothing(case, files, tmp_path):
    extra, needles = ML_CASES[case]
    root = str(files["root"])
    out = tmp_path / "out"
    proc = cli(*ml_args(files, *(e.replace("{root}", root) for e in extra)), "--out", out, cache=tmp_path / "cache")
    one_line(proc, *(n.replace("{root}", root) for n in needles))
    assert not out.exists()


def test_cuda_asked_for_where_there_is_none(files, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    one_line(cli(*ml_args(files, "--device", "cuda"), "--out", out, cache=tmp_path / "cache"),
             "device 'cuda' asked for, but CUDA is not available here")
    assert not out.exists()


MASK_CASES = {
    "mask of the wrong length": ("mask3.json", ["holds 3 values; expected a flat list of 8 0/1 values or 2 lists "
                                                "of 4 0/1 values"]),
    "mask values other than 0/1": ("mask_values.json", ["holds values other than 0/1 (e.g. 2)"]),
    "mask file that is not JSON": ("mask_text.json", ["is not valid JSON"]),
    "mask file that does not exist": ("nowhere.json", ["does not exist"]),
}


@pytest.mark.parametrize("case", list(MASK_CASES))
def test_bad_mask_file(case, files, tmp_path):
    name, needles = MASK_CASES[case]
    mask = files["root"] / name
    proc = cli("evaluate", "--model", files["tiny"], "--mask", mask, "--set", f"corpus={files['corpus']}",
               "--set", "window=32", "--set", "stride=16", "--set", "n_windows=3", "--set", "n_boot=20",
               cache=tmp_path / "cache")
    one_line(proc, f"mask file '{mask}'", *needles)
    assert proc.stdout == ""
