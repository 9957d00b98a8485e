"""Evaluators: where the loop's real evaluations run.

:func:`~framework.loop.optimize` hands batches of masks to an evaluator and commits each batch's
values to the store when the evaluator returns them.  Two evaluators:

* ``local`` (:class:`LocalEvaluator`, the default): in this process, one batch at a time, with
  :func:`evaluate_guarded` on the problem the loop was given.
* ``ray`` (:class:`RayEvaluator`): a pool of Ray actors (``pip install 'headrepair[ray]'``).  Each
  actor builds the problem once from its registered name and options (a problem holds a model:
  it is built where it runs, never pickled), then evaluates the batches it is sent with
  :func:`evaluate_guarded` and returns values, infos, failure reasons and seconds per mask.
  One actor per GPU when the cluster has GPUs, else one per ``worker_cpus`` CPUs.  Several
  batches are in flight at once (one per actor, more queue at the actors); an actor that dies
  (killed, out of memory, its node lost) is replaced by a new one and its batch is sent again,
  so nothing is lost, and nothing is counted twice (the loop receives each batch once).
  Without an address a local Ray instance is started with ``workers * worker_cpus`` CPUs and
  shut down by :meth:`Evaluator.close`; with one (``ray start --head`` prints it) the evaluator
  joins that cluster and leaves it running.

Head-sensitivity calls go through the evaluator too (on one actor for ``ray``).  The loop's
problem (in this process) still answers everything else: fingerprints, normalization, and the
verification of the front on the validation and held-out splits after the search.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.faults import fault_point

__all__ = ["EXECUTORS", "RAY_REQUIREMENT", "BatchResult", "Evaluator", "LocalEvaluator", "RayEvaluator",
           "evaluate_guarded", "make_evaluator", "check_executor", "import_ray", "ray_session"]

#: Executors ``headrepair run/bench --executor`` accepts.
EXECUTORS = ("local", "ray")
#: The Ray release this project is tested with (the ``ray`` optional dependency group pins it).
RAY_REQUIREMENT = "ray==2.60.0"
#: Attempts of one batch on a fresh actor after the actor evaluating it died, before the run stops.
MAX_ATTEMPTS = 3


def _reason(exc: BaseException) -> str:
    from framework.validate import one_line

    return f"{type(exc).__name__}: {one_line(exc)}"[:500]


def evaluate_guarded(problem, masks: np.ndarray,
                     split: str) -> tuple[np.ndarray, list[dict], list[str | None], list[float]]:
    """Evaluate ``masks`` on ``split`` without letting one mask sink the batch.

    Returns ``(values float[n, m], infos, reasons, seconds)``: a batch whose evaluation raises is
    evaluated again mask by mask; a mask whose own evaluation raises gets NaN values and the
    exception as its reason (``"ValueError: ..."``); a non-finite value gets ``"non-finite
    objective: NAME=nan"``; ``reasons[i]`` is ``None`` for a good evaluation.  ``seconds[i]``: the
    mask's share of the time spent (a failed batch attempt shared among its masks)."""
    n = len(masks)
    t0 = time.perf_counter()
    try:
        values, infos = problem.evaluate_with_info(masks, split)
        values = np.asarray(values, dtype=float)
        reasons: list[str | None] = [None] * n
        seconds = [(time.perf_counter() - t0) / n] * n
    except Exception as exc:
        wasted = (time.perf_counter() - t0) / n
        if n == 1:
            values, infos, reasons, seconds = np.full((1, problem.n_objectives), np.nan), [{}], [_reason(exc)], [wasted]
        else:
            parts = [evaluate_guarded(problem, masks[i:i + 1], split) for i in range(n)]
            values = np.vstack([p[0] for p in parts])
            infos = [p[1][0] for p in parts]
            reasons = [p[2][0] for p in parts]
            seconds = [p[3][0] + wasted for p in parts]
    for i in range(n):
        if reasons[i] is None and not np.all(np.isfinite(values[i])):
            bad = ", ".join(f"{name}={v}" for name, v in zip(problem.objective_names, values[i], strict=True)
                            if not np.isfinite(v))
            reasons[i] = f"non-finite objective: {bad}"
    return values, list(infos), reasons, seconds


@dataclass
class BatchResult:
    """What an evaluator returns for one submitted batch (the fields of :func:`evaluate_guarded`)."""

    ticket: int
    values: np.ndarray
    infos: list[dict]
    reasons: list[str | None]
    seconds: list[float]


class Evaluator(ABC):
    """Evaluates batches of masks for :func:`~framework.loop.optimize`.

    ``bind(problem)`` is called once before the first batch (the loop's problem: an evaluator
    that builds its own copies checks that they have its fingerprint); ``submit`` hands over a
    batch and returns its ticket; ``next_done`` blocks until some submitted batch is evaluated
    and returns it (any order); ``close`` releases what the evaluator started.  ``slots``: how
    many batches it evaluates at the same time (the loop keeps up to that many in flight for a
    strategy that asks while evaluations are pending)."""

    name: ClassVar[str] = ""
    slots: int = 1

    def bind(self, problem) -> None:  # noqa: B027 - optional hook
        """Prepare to evaluate ``problem`` (called once, before the first :meth:`submit`)."""

    @abstractmethod
    def submit(self, masks: np.ndarray, split: str) -> int:
        """Start evaluating ``bool[n, d]`` masks on ``split``; returns the batch's ticket."""

    @abstractmethod
    def next_done(self) -> BatchResult:
        """Block until one submitted batch is evaluated and return it."""

    @abstractmethod
    def sensitivities(self, problem, mask: np.ndarray, split: str):
        """The problem's head sensitivities of ``mask`` (a :class:`~framework.problem.Sensitivities`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers (batches still in flight are abandoned, never received)."""

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "slots": self.slots}


class LocalEvaluator(Evaluator):
    """In this process, one batch at a time, in the order submitted (the default)."""

    name = "local"

    def __init__(self) -> None:
        self.problem = None
        self._queue: deque[tuple[int, np.ndarray, str]] = deque()
        self._tickets = 0

    def bind(self, problem) -> None:
        self.problem = problem

    def submit(self, masks: np.ndarray, split: str) -> int:
        self._tickets += 1
        self._queue.append((self._tickets, masks, split))
        return self._tickets

    def next_done(self) -> BatchResult:
        ticket, masks, split = self._queue.popleft()
        values, infos, reasons, seconds = evaluate_guarded(self.problem, masks, split)
        return BatchResult(ticket, values, infos, reasons, seconds)

    def sensitivities(self, problem, mask: np.ndarray, split: str):
        return problem.sensitivities(mask, split)


# ----------------------------------------------------------------------------------------- Ray
def import_ray():
    """The ``ray`` module, or ``ValueError`` (bad input: exit status 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--executor ray needs Ray, which is not installed: pip install 'headrepair[ray]' "
                         f"(or {RAY_REQUIREMENT})") from None
    return ray


def _probe_address(address: str, timeout: float = 5.0) -> None:
    """``ValueError`` naming ``address`` unless a TCP connection to it opens within ``timeout``
    (``ray.init`` would wait minutes on an address nobody answers)."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--address {address!r}: expected HOST:PORT (as `ray start --head` prints it, e.g. "
                         f"10.0.0.5:6379) or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(f"--address {address!r} is unreachable ({exc.strerror or type(exc).__name__}); start the "
                         f"head node with `ray start --head` and pass the address it prints") from None


def check_executor(executor: str, *, address: str | None = None, workers: int | None = None,
                   worker_cpus: int | None = None, pending: int | None = None) -> None:
    """Check executor settings before anything is written (one-line ``ValueError``s): the name,
    ``workers``/``worker_cpus``/``pending`` >= 1, flags that only ``ray`` takes, Ray installed and the
    address answering."""
    from framework.validate import did_you_mean

    if executor not in EXECUTORS:
        raise ValueError(f"executor (--executor) must be one of {', '.join(EXECUTORS)}, got {executor!r}"
                         f"{did_you_mean(str(executor), EXECUTORS)}")
    for flag, value in (("workers", workers), ("worker_cpus", worker_cpus), ("pending", pending)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} (--{flag.replace('_', '-')}) must be >= 1, got {value}")
    if executor == "local":
        given = [f"--{f}" for f, v in (("address", address), ("workers", workers), ("worker-cpus", worker_cpus),
                                        ("pending", pending)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --executor ray (the local executor evaluates in "
                             "this process)")
        return
    import_ray()
    if address:
        _probe_address(address)


class _Worker:
    """A Ray actor holding one problem, built from its registered name and options."""

    def __init__(self, problem_name: str, problem_options: dict[str, Any], threads: int | None, cwd: str) -> None:
        from framework.registry import PROBLEMS

        if os.path.isdir(cwd):  # relative paths in the options mean what they mean to the driver
            os.chdir(cwd)

        self.problem = PROBLEMS.create(problem_name, **problem_options)
        if threads:
            import sys

            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(int(threads))

    def fingerprint(self, split: str) -> str:
        return self.problem.fingerprint(split)

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, masks: np.ndarray, split: str):
        out = evaluate_guarded(self.problem, masks, split)
        fault_point("worker")  # tests: the actor dies with the batch computed, before returning it
        return out

    def sensitivities(self, mask: np.ndarray, split: str):
        return self.problem.sensitivities(mask, split)


@dataclass
class _Job:
    ticket: int
    masks: np.ndarray
    split: str
    actor: Any
    attempts: int = 1


@dataclass
class _Pool:
    """Ray actors with their outstanding batches."""

    actors: list[Any] = field(default_factory=list)
    load: dict[int, int] = field(default_factory=dict)   # id(actor) -> batches outstanding


class ray_session:
    """Context manager: connect to the Ray cluster at ``address``, or (``None``) start a local Ray
    instance with ``num_cpus`` CPUs; a Ray already initialized in this process is used as it is.
    Leaves shut down only what it started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.owned = False

    def __enter__(self):
        import logging

        ray = import_ray()
        if not ray.is_initialized():
            if self.address:
                _probe_address(self.address)
                ray.init(address=self.address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
            self.owned = True
        return ray

    def __exit__(self, *exc) -> None:
        if self.owned:
            import ray

            ray.shutdown()
            self.owned = False


class RayEvaluator(Evaluator):
    """A pool of Ray actors, each holding the problem ``problem_name`` built with ``problem_options``.

    Args:
        workers: actors (default: one per GPU of the cluster when it has GPUs, else one per
            ``worker_cpus`` CPUs of the cluster; a local instance has ``workers * worker_cpus`` CPUs,
            default this machine's).
        address: a running cluster (``ray start --head`` prints it; ``auto`` finds a local one);
            ``None`` starts a local Ray instance, shut down by :meth:`close`.
        worker_cpus: CPUs each actor reserves (and its torch threads).
        max_attempts: times one batch is sent to a fresh actor after the actor evaluating it died.
    """

    name = "ray"

    def __init__(self, problem_name: str, problem_options: dict[str, Any] | None = None, *,
                 workers: int | None = None, address: str | None = None, worker_cpus: int = 1,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        check_executor("ray", address=address, workers=workers, worker_cpus=worker_cpus)
        self.problem_name, self.problem_options = problem_name, dict(problem_options or {})
        self.workers, self.address, self.worker_cpus = workers, address, int(worker_cpus)
        self.max_attempts = int(max_attempts)
        local_cpus = None if address else (workers or os.cpu_count() or 1) * self.worker_cpus
        self._session = ray_session(address, local_cpus)
        self._pool = _Pool()
        self._jobs: dict[Any, _Job] = {}
        self._tickets = 0
        self._gpus = 0
        self._fault = os.environ.get("HEADREPAIR_FAULT", "")
        self.n_restarts = 0   # actors started to replace dead ones
        self.n_retried = 0    # batches sent again because their actor died
        self.slots = workers or 1

    # ------------------------------------------------------------------ actors
    def _start_actor(self, fault: str = ""):
        cls = self._cls.options(
            num_cpus=self.worker_cpus, num_gpus=self._gpus, max_restarts=0,
            # a fault (tests only: HEADREPAIR_FAULT=worker:N) goes to the first actor alone, so that one
            # actor dies and its replacement does not
            runtime_env={"env_vars": {"HEADREPAIR_FAULT": fault}})
        actor = cls.remote(self.problem_name, self.problem_options, self.worker_cpus, os.getcwd())
        self._pool.actors.append(actor)
        self._pool.load[id(actor)] = 0
        return actor

    def _replace(self, actor) -> None:
        if actor not in self._pool.actors:
            return  # already replaced (several of its batches failed)
        self._pool.actors.remove(actor)
        self._pool.load.pop(id(actor), None)
        try:
            self._ray.kill(actor)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        self._start_actor()
        self.n_restarts += 1

    def bind(self, problem) -> None:
        """Start the actors (once: binding again, e.g. for a second run, keeps them) and check that
        they built a problem with ``problem``'s fingerprint."""
        if self._pool.actors:
            self._check_fingerprint(problem)
            return
        ray = self._ray = self._session.__enter__()
        try:
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0))
            self._gpus = 1 if gpus >= 1 else 0
            n = self.workers or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // self.worker_cpus))
            self.slots = n
            self._cls = ray.remote(_Worker)
            for i in range(n):
                self._start_actor(self._fault if i == 0 else "")
            self._check_fingerprint(problem)
        except BaseException:
            self.close()
            raise

    def _check_fingerprint(self, problem) -> None:
        want = problem.fingerprint("search")
        got = self._ray.get([a.fingerprint.remote("search") for a in self._pool.actors])
        if any(g != want for g in got):
            raise ValueError(f"the Ray workers built problem {self.problem_name!r} with another fingerprint than "
                             "this process (another version of headrepair, its model or its data on the "
                             "workers?); install the same package and make the same files reachable on "
                             "every node")

    def actors(self) -> list[Any]:
        """The live actors (tests kill one to check that nothing is lost)."""
        return list(self._pool.actors)

    # -------------------------------------------------------------- batches
    def _send(self, job: _Job) -> None:
        actor = min(self._pool.actors, key=lambda a: self._pool.load[id(a)])
        self._pool.load[id(actor)] += 1
        job.actor = actor
        self._jobs[actor.evaluate.remote(job.masks, job.split)] = job

    def submit(self, masks: np.ndarray, split: str) -> int:
        self._tickets += 1
        self._send(_Job(self._tickets, np.asarray(masks, dtype=bool), split, None))
        return self._tickets

    def next_done(self) -> BatchResult:
        ray = self._ray
        while True:
            if not self._jobs:
                raise RuntimeError("next_done() with no batch in flight")
            ready, _ = ray.wait(list(self._jobs), num_returns=1)
            job = self._jobs.pop(ready[0])
            if id(job.actor) in self._pool.load:
                self._pool.load[id(job.actor)] -= 1
            try:
                values, infos, reasons, seconds = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                self._replace(job.actor)
                if job.attempts >= self.max_attempts:
                    raise RuntimeError(f"the Ray actor evaluating a batch of {len(job.masks)} masks died "
                                       f"{job.attempts} times (last: {_reason(exc)[:200]})") from exc
                job.attempts += 1
                self.n_retried += 1
                self._send(job)
                continue
            return BatchResult(job.ticket, np.asarray(values, dtype=float), list(infos), list(reasons),
                               list(seconds))

    def sensitivities(self, problem, mask: np.ndarray, split: str):
        ray = self._ray
        for attempt in range(1, self.max_attempts + 1):
            actor = min(self._pool.actors, key=lambda a: self._pool.load[id(a)])
            try:
                return ray.get(actor.sensitivities.remote(np.asarray(mask, dtype=bool), split))
            except ray.exceptions.RayActorError as exc:
                self._replace(actor)
                if attempt == self.max_attempts:
                    raise RuntimeError(f"the Ray actor computing head sensitivities died {attempt} times "
                                       f"(last: {_reason(exc)[:200]})") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        ray = getattr(self, "_ray", None)
        if ray is not None and ray.is_initialized():
            for actor in self._pool.actors:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001 - best effort
                    pass
        self._pool = _Pool()
        self._jobs.clear()
        self._session.__exit__(None, None, None)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "slots": self.slots, "address": self.address,
                "worker_cpus": self.worker_cpus, "restarts": self.n_restarts, "retried_batches": self.n_retried}


def make_evaluator(executor: str = "local", *, problem_name: str | None = None,
                   problem_options: dict[str, Any] | None = None, address: str | None = None,
                   workers: int | None = None, worker_cpus: int | None = None) -> Evaluator:
    """The evaluator ``executor`` names (``local`` or ``ray``; the Ray one builds ``problem_name``)."""
    check_executor(executor, address=address, workers=workers, worker_cpus=worker_cpus)
    if executor == "local":
        return LocalEvaluator()
    if not problem_name:
        raise ValueError("the ray executor needs the problem's registered name (problem_name)")
    return RayEvaluator(problem_name, problem_options, workers=workers, address=address,
                        worker_cpus=worker_cpus or 1)
