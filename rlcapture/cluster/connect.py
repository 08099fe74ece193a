"""Joining Ray: an address, a local cluster already running, or a new one; and leaving it as found.

``address=None`` joins the Ray instance this process is already connected to,
else a local cluster started with ``ray start --head`` (``address="auto"``),
else starts one on this machine for the run and stops it at the end (Ray's own
processes, its object store's memory, its session folder's sockets: nothing is
left). A cluster elsewhere is named by its address (``HOST:6379``) or a Ray
client address (``ray://HOST:10001``); leaving it only disconnects.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from ..errors import ConfigError, RLCaptureError, first_line

__all__ = ["RayConnection", "import_ray", "INSTALL"]

INSTALL = "Ray is not installed: pip install 'rlcapture[ray]'"


def import_ray() -> ModuleType:
    """``import ray``, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"{INSTALL} ({exc})") from None
    return ray


class RayConnection:
    """A context manager: connected to Ray inside, as before outside.

    Args:
        address: None or "" (join this process's Ray, else a local cluster,
            else start one), "auto" (a local cluster that must exist), "local"
            (always a new one), or an address.
        init_options: More keywords for ``ray.init`` (``runtime_env``,
            ``num_cpus`` of a new local cluster, ...).

    Attributes:
        started: Whether this connection started Ray (and stops it on exit).
        joined: Whether it connected this process (and disconnects on exit).
    """

    def __init__(self, address: str | None = None, init_options: dict[str, Any] | None = None) -> None:
        if address is not None and not isinstance(address, str):
            raise ConfigError(f"ray address must be a string like HOST:6379 or ray://HOST:10001, got {address!r}")
        self.address = address or None
        self.init_options = dict(init_options or {})
        self.started = False
        self.joined = False
        self.ray = import_ray()

    def __enter__(self) -> RayConnection:
        ray = self.ray
        if ray.is_initialized():
            if self.address not in (None, "auto"):
                raise ConfigError(
                    f"this process is already connected to Ray; cannot also join {self.address!r} "
                    "(call ray.shutdown() first, or pass no address)"
                )
            return self
        options: dict[str, Any] = {
            "logging_level": logging.WARNING,
            "include_dashboard": False,
            "configure_logging": True,
            # Ray starts its workers at nice 15 by default: on a machine shared with
            # other work, the actors (and the env workers and encoders they fork)
            # then get a small share of the cores, and a --ray run took 1.4x the
            # local run's time (benchmarks/RESULTS.md, "Ray"). A Ray started for the
            # run runs them at the driver's priority; a cluster keeps its own setting.
            "_system_config": {"worker_niceness": 0},
        }
        options.update(self.init_options)
        address = self.address
        try:
            if address is None:
                try:
                    ray.init(address="auto", **_joining(options))
                except (ConnectionError, RuntimeError, ValueError):
                    ray.init(address="local", **options)
                    self.started = True
            elif address == "local":
                ray.init(address="local", **options)
                self.started = True
            else:
                ray.init(address=address, **_joining(options))
        except RLCaptureError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for a bad address
            if ray.is_initialized():
                ray.shutdown()
            where = address or "a local Ray"
            raise ConfigError(
                f"cannot connect to Ray at {where}: {type(exc).__name__}: {first_line(exc)}; "
                "start one with `ray start --head` or pass its address"
            ) from None
        self.joined = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.joined:
            self.ray.shutdown()  # a cluster we started stops with it; one we joined stays


def _joining(options: dict[str, Any]) -> dict[str, Any]:
    """Options Ray accepts when joining a cluster (resources belong to the cluster)."""
    cluster_only = ("num_cpus", "num_gpus", "resources", "object_store_memory", "include_dashboard", "_system_config")
    return {k: v for k, v in options.items() if k not in cluster_only}
