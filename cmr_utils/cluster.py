"""Dask, the one engine for work spread over processes or machines.

A stage's ``cluster`` parameter is None (run in this process), ``"local:N"`` (a LocalCluster of
N worker processes on this machine, each with an equal share of the cores) or a scheduler
address such as ``"tcp://host:8786"`` (an existing cluster, e.g. one dask-jobqueue started on
SLURM). Tasks are independent pieces of a stage (a shard of features, a chunk of pairs' moments,
a configuration's evaluation) whose results are combined here, in task order, so the result
does not depend on where or in which order the tasks ran.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Callable, Iterator

from .progress import bar


@contextlib.contextmanager
def connect(cluster: str | None) -> Iterator:
    """A ``distributed.Client`` for ``cluster`` (None yields None), closed (and a local cluster stopped) after."""
    if cluster is None:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster
    if re.fullmatch(r"local:[1-9]\d*", cluster):
        n = int(cluster.split(":", 1)[1])
        threads = max(1, (os.cpu_count() or 1) // n)
        env = {var: str(threads) for var in THREAD_VARS}
        before = {var: os.environ.get(var) for var in THREAD_VARS}
        # glibc's default trim threshold, not Dask's 64 KiB, which makes torch fault its buffers in
        # again on every batch (encoding 1.6x slower). Workers stay daemons: the worker processes
        # are the parallelism, so an encoder decodes in its own thread there (1.6x faster than
        # starting DataLoader processes per shard; benchmarks/dask_overhead.py)
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=env,
                             dashboard_address=":0") as local, Client(local) as client:
            _restore(before)  # the nannies set the workers' share in this process's environment too
            yield client
    elif cluster.startswith(("tcp://", "tls://")):
        try:
            client = Client(cluster, timeout=CONNECT_TIMEOUT)
        except OSError as e:
            raise OSError(f"cluster={cluster!r}: no Dask scheduler answered within {CONNECT_TIMEOUT} s ({e}); is it "
                          "running, and reachable from here? Or use cluster='local:N' or None") from None
        with client:
            yield client
    else:
        raise ValueError(f"cluster must be None, 'local:N' (N ≥ 1 worker processes) or a scheduler address "
                         f"'tcp://host:port', got {cluster!r}")


CONNECT_TIMEOUT = 30  # seconds


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _restore(env: dict) -> None:
    """Put these variables back: processes this one starts later (notebook kernels) get all the cores."""
    for var, value in env.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


def describe(client) -> dict:
    """What a report says about where it ran: the cluster, its workers and its dashboard."""
    if client is None:
        return {"cluster": "in-process"}
    info = client.scheduler_info()
    return {"cluster": client.scheduler.address, "workers": len(info["workers"]),
            "threads": sum(w["nthreads"] for w in info["workers"].values()), "dashboard": client.dashboard_link}


def run(fn: Callable, tasks: list[tuple], client=None, desc: str = "", weights: list[int] | None = None,
        progress: bool = True, combine: Callable | None = None):
    """``[fn(*t) for t in tasks]`` in task order, on the cluster's workers when ``client`` is given.

    Tasks must be independent and idempotent: a task whose worker dies is run again elsewhere
    (the scheduler's own retry); an error raised by a task stops the stage. ``combine``
    folds the results in task order as they arrive (``combine(total, result)``, the first result
    starting the total) and only the total is returned, so large partial results are not all
    held at once and the total does not depend on which task finished first. ``weights``
    (e.g. items per task) drive the progress bar.
    """
    weights = weights or [1] * len(tasks)
    out, total = [], None

    def take(i, result):
        nonlocal total
        if combine is None:
            out.append(result)
        else:
            total = result if i == 0 else combine(total, result)

    with bar(total=sum(weights), desc=desc, disable=not progress or not tasks) as b:
        if client is None:
            for i, (t, w) in enumerate(zip(tasks, weights)):
                take(i, fn(*t))
                b.update(w)
        else:
            from distributed import as_completed
            futures = client.map(fn, *zip(*tasks), pure=False) if tasks else []
            order = {f.key: i for i, f in enumerate(futures)}
            done, nxt = {}, 0
            for f in as_completed(futures):
                done[order[f.key]] = f
                b.update(weights[order[f.key]])
                while nxt in done:
                    take(nxt, done.pop(nxt).result())
                    futures[nxt] = None  # release the worker's copy
                    nxt += 1
    return out if combine is None else total
