"""The same patients through SimPy: a peer implementation of the engine's core rules (FIFO within ESI priority,
fixed beds, unlimited queues, no pre-emption) used to validate :mod:`.engine` in tests and to measure it
beside SimPy in ``benchmarks/bench_hospital.py``. Fed the very same :class:`~.sampling.Patients`, both must
give the same waits visit by visit.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from medtwin.hospital.model import HospitalModel
from medtwin.hospital.sampling import Patients


def simpy_waits(model: HospitalModel, patients: Patients, horizon_h: float) -> tuple[np.ndarray, int]:
    """(n, hops) waits in hours (NaN where not started before the horizon) and the number of SimPy events."""
    env = simpy.Environment()
    beds = [simpy.PriorityResource(env, capacity=u.beds) for u in model.units]
    waits = np.full(patients.path.shape, np.nan)
    counter = [0]

    def patient(k: int) -> Generator[Any, Any, None]:
        yield env.timeout(float(patients.t0_h[k]))
        for j in range(patients.path.shape[1]):
            unit = int(patients.path[k, j])
            if unit < 0:
                return
            joined = env.now
            with beds[unit].request(priority=int(patients.esi[k])) as request:
                yield request
                waits[k, j] = env.now - joined
                counter[0] += 1
                yield env.timeout(float(patients.service_h[k, j]))

    for k in range(len(patients)):
        env.process(patient(k))
    env.run(until=horizon_h)
    return waits, counter[0]


def simpy_mmc(rate_per_h: float, mean_service_h: float, servers: int, horizon_h: float,
              rng: np.random.Generator) -> tuple[float, int]:
    """A plain SimPy M/M/c (the benchmark's peer): mean wait in queue and customers served."""
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=servers)
    total = [0.0, 0]

    def customer(service: float) -> Generator[Any, Any, None]:
        arrived = env.now
        with server.request() as request:
            yield request
            total[0] += env.now - arrived
            total[1] += 1
            yield env.timeout(service)

    def source() -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(float(rng.exponential(1.0 / rate_per_h)))
            env.process(customer(float(rng.exponential(mean_service_h))))

    env.process(source())
    env.run(until=horizon_h)
    return total[0] / max(total[1], 1), int(total[1])
