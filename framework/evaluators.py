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

from typing import Any

from framework.evaluator_base import BatchResult, Evaluator, LocalEvaluator, evaluate_guarded
from framework.executor_settings import EXECUTORS, RAY_REQUIREMENT, check_executor, import_ray
from framework.ray_evaluator import MAX_ATTEMPTS as MAX_ATTEMPTS
from framework.ray_evaluator import RayEvaluator, ray_session

# The implementations live in framework.evaluator_base (the interface, the local evaluator),
# framework.executor_settings (the --executor check, importing Ray) and framework.ray_evaluator;
# their names are re-exported here, where they have always been imported from.
__all__ = ["EXECUTORS", "RAY_REQUIREMENT", "BatchResult", "Evaluator", "LocalEvaluator", "RayEvaluator",
           "evaluate_guarded", "make_evaluator", "check_executor", "import_ray", "ray_session"]


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
