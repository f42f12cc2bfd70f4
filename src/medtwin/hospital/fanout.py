"""Replications x scenarios fanned out on Dask: an in-process ``LocalCluster`` by default (threads, no
sub-processes: starts in a second, good for tests and small runs), a local cluster of processes for
throughput (``processes=True``: pure-Python simulation holds the GIL), or any scheduler address (the same
code on a cluster). The caller passes the address (the CLI reads ``--scheduler``); nothing here reads the
environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster, as_completed

from medtwin.hospital.model import HospitalModel
from medtwin.hospital.replicate import Chunk, Results, collect, run_block
from medtwin.hospital.whatif import Scenario


@contextmanager
def dask_client(address: str | None = None, processes: bool = False, n_workers: int = 1,
                threads_per_worker: int = 2) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a new local cluster closed on exit."""
    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(processes=processes, n_workers=n_workers, threads_per_worker=threads_per_worker,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def run_grid(client: Client, model: HospitalModel, scenarios: list[Scenario], n_reps: int, seed: int,
             horizon_h: float, warmup_h: float = 0.0, chunk: int = 10,
             progress: Callable[[int], None] | None = None) -> Results:
    """Every scenario x replication; one task runs ``chunk`` replications of every scenario (their base
    patients drawn once per replication: :func:`~medtwin.hospital.replicate.run_block`) and returns only
    their scalar metrics; results by scenario and metric. ``progress`` is called with the number of runs
    done as each task ends."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique: {names}")
    model_future = client.scatter(model, broadcast=True)
    futures = [client.submit(run_block, model_future, scenarios, seed, list(range(a, min(a + chunk, n_reps))),
                             horizon_h, warmup_h, pure=False)
               for a in range(0, n_reps, chunk)]
    chunks: list[Chunk] = []
    for future in as_completed(futures):
        chunks.extend(future.result())
        if progress is not None:
            progress(sum(len(reps) for _, reps, _ in chunks))
    return collect(chunks, n_reps)
