"""Durable evaluation store on SQLite.

Every real evaluation is committed here before a strategy is told its value, so a killed
run loses nothing it paid for.  Evaluations are keyed by the problem's fingerprint and the
packed mask: a later run of the same problem (same fingerprint) reuses them instead of
paying again.  The ``trials`` table records, per run, the order in which the run used
evaluations (its history) and whether each was a cache hit.  Head sensitivities (one budget
unit each) have their own tables, keyed the same way: ``sensitivities`` (the estimates) and
``sensitivity_trials`` (when a run used them: ``spent`` = budget units spent before the call).

Reliability:

- Every write is one transaction (SQLite, WAL journal, synchronous=NORMAL): a process killed at
  any point leaves each batch either wholly committed or not at all.
- Several processes may share one store (two runs with ``--store`` on one file, benchmark jobs):
  WAL lets readers go on while one writes, and a writer waits up to 60 s for another's
  transaction (busy timeout) instead of failing.  A mask is stored once: the first commit wins
  (``ON CONFLICT DO NOTHING``), so two runs that pay for the same mask at the same moment keep
  one row and both receive its value.
- The schema is versioned (``PRAGMA user_version``, :data:`SCHEMA_VERSION`).  A store of an
  older schema is migrated when it is opened (schema 1, before head sensitivities, gains their
  two tables; nothing else changes); a file that is not an evaluation store (not SQLite, another
  program's database, a table of another shape) or a store of a newer schema is refused with a
  :class:`StoreError` before anything is written to it (:func:`check_store` checks a path
  without opening it for writing).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.faults import fault_point
from framework.history import pack_mask, unpack_mask
from framework.space import as_masks
from framework.store_schema import _SCHEMA, SCHEMA_VERSION, StoreError, _inspect, _wal, check_store, is_store_file

# The schema, the check of a store file and migration live in framework.store_schema; their public
# names are re-exported here, where they have always been imported from.
__all__ = ["EvaluationStore", "StoredEvaluation", "StoreError", "SCHEMA_VERSION", "run_fingerprints", "is_store_file",
           "check_store"]


@dataclass(frozen=True)
class StoredEvaluation:
    mask: np.ndarray          # bool[d]
    objectives: np.ndarray    # float[m]; NaN where failed
    info: dict
    status: str               # "ok" | "failed"
    reason: str | None
    wall_time: float          # seconds spent on this evaluation (its share of its batch)
    strategy: str | None
    seed: int | None
    run_id: str | None


class EvaluationStore:
    """SQLite store of real evaluations.  ``path=":memory:"`` for a throw-away store.

    Opening checks the file before writing to it (:class:`StoreError` for a file that is not an
    evaluation store, or one of a newer schema) and migrates a store of an older schema;
    ``migrated_from`` is then its old version (else ``None``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.migrated_from: int | None = None
        memory = self.path == ":memory:"
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60.0)
        try:
            version, schema = _inspect(self._db, f"evaluation store {self.path!r}")
            if not memory:
                _wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            if schema != SCHEMA_VERSION or version != SCHEMA_VERSION:
                # one transaction: a process opening the store at the same moment sees all tables or none
                self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
                if schema is not None and schema != SCHEMA_VERSION:
                    self.migrated_from = schema
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EvaluationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ problems
    def register_problem(self, fingerprint: str, name: str, description: dict) -> None:
        self._db.execute("INSERT OR IGNORE INTO problems VALUES (?, ?, ?)",
                         (fingerprint, name, json.dumps(description, sort_keys=True, default=str)))
        self._db.commit()

    # --------------------------------------------------------- evaluations
    def put(self, fingerprint: str, masks: np.ndarray, objectives: np.ndarray, *,
            infos: Iterable[dict] | None = None, wall_times: Iterable[float] | None = None,
            reasons: Iterable[str | None] | None = None, strategy: str | None = None,
            seed: int | None = None, run_id: str | None = None) -> None:
        """Commit one evaluation per row.  Rows with a non-finite objective are stored as
        failed (with ``reasons[i]`` or ``"non-finite objective"``).  One transaction; a mask
        already stored keeps its row (the first commit wins)."""
        m = as_masks(masks, np.asarray(masks).shape[-1])
        y = np.asarray(objectives, dtype=float).reshape(len(m), -1)
        infos = list(infos) if infos is not None else [{} for _ in m]
        wall = list(wall_times) if wall_times is not None else [0.0] * len(m)
        why = list(reasons) if reasons is not None else [None] * len(m)
        now = time.time()
        rows = []
        for i in range(len(m)):
            ok = bool(np.all(np.isfinite(y[i])))
            rows.append((fingerprint, pack_mask(m[i]), m.shape[1],
                         json.dumps([None if not np.isfinite(v) else float(v) for v in y[i]]),
                         json.dumps(infos[i], default=float), "ok" if ok else "failed",
                         None if ok else (why[i] or "non-finite objective"), float(wall[i]),
                         strategy, seed, run_id, now))
        with self._db:  # the first commit of a mask wins: a row is never overwritten
            self._db.executemany("INSERT INTO evaluations VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                                 "ON CONFLICT (fingerprint, mask) DO NOTHING", rows)
            fault_point("commit")

    def get(self, fingerprint: str, masks: np.ndarray) -> list[StoredEvaluation | None]:
        """Stored evaluation of each mask, ``None`` where there is none."""
        m = as_masks(masks, np.asarray(masks).shape[-1])
        out: list[StoredEvaluation | None] = []
        cur = self._db.cursor()
        for row in m:
            r = cur.execute("SELECT * FROM evaluations WHERE fingerprint=? AND mask=?",
                            (fingerprint, pack_mask(row))).fetchone()
            out.append(None if r is None else self._row(r))
        return out

    def all(self, fingerprint: str) -> list[StoredEvaluation]:
        """Every stored evaluation of a problem, in insertion order."""
        rows = self._db.execute("SELECT * FROM evaluations WHERE fingerprint=? ORDER BY rowid",
                                (fingerprint,)).fetchall()
        return [self._row(r) for r in rows]

    def count(self, fingerprint: str | None = None) -> int:
        if fingerprint is None:
            return self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM evaluations WHERE fingerprint=?",
                                (fingerprint,)).fetchone()[0]

    @staticmethod
    def _row(r: tuple) -> StoredEvaluation:
        (_, blob, n_bits, objs, info, status, reason, wall, strategy, seed, run_id, _created) = r
        return StoredEvaluation(unpack_mask(blob, n_bits),
                                np.array([np.nan if v is None else v for v in json.loads(objs)], dtype=float),
                                json.loads(info), status, reason, wall, strategy, seed, run_id)

    # -------------------------------------------------------------- trials
    def add_trials(self, run_id: str, start_seq: int, fingerprint: str, masks: np.ndarray,
                   cache_hits: Iterable[bool]) -> None:
        """Record that run ``run_id`` used these evaluations, numbered from ``start_seq``."""
        rows = [(run_id, start_seq + i, fingerprint, pack_mask(mk), int(h))
                for i, (mk, h) in enumerate(zip(masks, cache_hits, strict=True))]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO trials VALUES (?,?,?,?,?)", rows)

    def trials(self, run_id: str) -> list[tuple[int, np.ndarray, bool]]:
        """``(seq, mask, cache_hit)`` of a run, in order."""
        return self._history("trials", "seq", "evaluations", run_id)

    def _history(self, table: str, order: str, values: str, run_id: str) -> list[tuple[int, np.ndarray, bool]]:
        rows = self._db.execute(
            f"SELECT t.{order}, t.mask, v.n_bits, t.cache_hit FROM {table} t JOIN {values} v "
            f"ON t.fingerprint = v.fingerprint AND t.mask = v.mask WHERE t.run_id=? ORDER BY t.{order}",
            (run_id,)).fetchall()
        return [(s, unpack_mask(b, n), bool(h)) for s, b, n, h in rows]

    # -------------------------------------------------------- sensitivities
    def put_sensitivities(self, fingerprint: str, sens, *, wall_time: float = 0.0, strategy: str | None = None,
                          seed: int | None = None, run_id: str | None = None) -> None:
        """Commit one :class:`~framework.problem.Sensitivities` (keyed by its mask)."""
        with self._db:
            self._db.execute("INSERT INTO sensitivities VALUES (?,?,?,?,?,?,?,?,?) "
                             "ON CONFLICT (fingerprint, mask) DO NOTHING",
                             (fingerprint, pack_mask(sens.mask), int(sens.mask.size),
                              json.dumps(sens.to_json(), default=float), float(wall_time), strategy, seed, run_id,
                              time.time()))
            fault_point("commit")

    def get_sensitivities(self, fingerprint: str, mask: np.ndarray):
        """The stored :class:`~framework.problem.Sensitivities` of ``mask``, or ``None``."""
        from framework.problem import Sensitivities

        r = self._db.execute("SELECT mask, n_bits, payload FROM sensitivities WHERE fingerprint=? AND mask=?",
                             (fingerprint, pack_mask(mask))).fetchone()
        return None if r is None else Sensitivities.from_json(unpack_mask(r[0], r[1]), json.loads(r[2]))

    def sensitivity_wall_time(self, fingerprint: str, mask: np.ndarray) -> float | None:
        """Seconds the stored sensitivities of ``mask`` took when they were paid, or ``None``."""
        paid = self.sensitivity_payment(fingerprint, mask)
        return None if paid is None else paid[0]

    def sensitivity_payment(self, fingerprint: str, mask: np.ndarray) -> tuple[float, str | None] | None:
        """``(seconds, run_id)``: what the stored sensitivities of ``mask`` cost and which run paid
        them, or ``None`` when none are stored."""
        r = self._db.execute("SELECT wall_time, run_id FROM sensitivities WHERE fingerprint=? AND mask=?",
                             (fingerprint, pack_mask(mask))).fetchone()
        return None if r is None else (float(r[0]), r[1])

    def add_sensitivity_trial(self, run_id: str, spent: int, fingerprint: str, mask: np.ndarray,
                              cache_hit: bool) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO sensitivity_trials VALUES (?,?,?,?,?)",
                             (run_id, int(spent), fingerprint, pack_mask(mask), int(cache_hit)))

    def sensitivity_trials(self, run_id: str) -> list[tuple[int, np.ndarray, bool]]:
        """``(spent, mask, cache_hit)`` of a run's sensitivity calls, in order."""
        return self._history("sensitivity_trials", "spent", "sensitivities", run_id)


def run_fingerprints(path: str | Path, run_id: str) -> dict[str, dict | None]:
    """Problem fingerprints of the evaluations and sensitivity calls a run received, each with the
    settings registered for it (``None`` if none were): read only, nothing in the store changes."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=60.0)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        fps: list[str] = []
        for table in ("trials", "sensitivity_trials"):
            if table in tables:
                fps += [r[0] for r in db.execute(f"SELECT DISTINCT fingerprint FROM {table} WHERE run_id=?",
                                                 (run_id,))]
        out: dict[str, dict | None] = {}
        for fp in dict.fromkeys(fps):
            row = (db.execute("SELECT description FROM problems WHERE fingerprint=?", (fp,)).fetchone()
                   if "problems" in tables else None)
            out[fp] = json.loads(row[0]) if row else None
        return out
    finally:
        db.close()
