"""Executor settings: the executors ``--executor`` accepts, their check before anything is written,
and importing Ray (:mod:`framework.evaluators` explains the executors).
"""

from __future__ import annotations

import socket

__all__ = ["EXECUTORS", "RAY_REQUIREMENT", "check_executor", "import_ray"]

#: Executors ``headrepair run/bench --executor`` accepts.
EXECUTORS = ("local", "ray")
#: The Ray release this project is tested with (the ``ray`` optional dependency group pins it).
RAY_REQUIREMENT = "ray==2.60.0"


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
