"""Evaluation sharded over a Ray cluster: one output folder, one manifest, nothing lost when a node dies.

``rlcapture record ENV --episodes K --ray [ADDRESS]`` or
:func:`evaluate_on_ray`. Tasks (lists of seeds) run on actors that each host
:func:`rlcapture.evaluate` on their node; the driver collects each episode as
it ends into one manifest. One file per mechanism:

- :mod:`.options`: the run's options, checked on the driver as a local run checks them;
- :mod:`.plan`: seeds into tasks, tasks re-queued when their actor dies;
- :mod:`.actor`: the actor, tailing its task's manifest; :mod:`.replies`: its typed answers;
- :mod:`.fleet`: the actors' health (states, calls in flight, liveness, replacements, stop);
- :mod:`.collector`: episodes settled once, judged by the keep rules, written to the manifest;
- :mod:`.storage`: shared output folder or node-local scratch, and the probe;
- :mod:`.transfer`: finished files copied to the driver in chunks;
- :mod:`.connect`: joining or starting Ray, and leaving it as found;
- :mod:`.driver`: the coordinator of all of them.

Ray is an extra (``pip install 'rlcapture[ray]'``), imported only when a run
starts.
"""

from __future__ import annotations

from .driver import ClusterResult, RayEvaluation, evaluate_on_ray
from .storage import STORAGE_MODES

__all__ = ["ClusterResult", "RayEvaluation", "STORAGE_MODES", "evaluate_on_ray"]
