"""The Ray evaluator: a pool of Ray actors, each holding the problem built from its registered name and
options (:mod:`framework.evaluators` explains how batches, dead actors and retries are handled), and
:class:`ray_session`, which connects to a Ray cluster or starts a local Ray instance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framework.evaluator_base import BatchResult, Evaluator, _reason, evaluate_guarded
from framework.executor_settings import _probe_address, check_executor, import_ray
from framework.faults import fault_point

__all__ = ["MAX_ATTEMPTS", "RayEvaluator", "ray_session"]

#: Attempts of one batch on a fresh actor after the actor evaluating it died, before the run stops.
MAX_ATTEMPTS = 3


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
