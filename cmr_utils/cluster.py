"""Dask, the one engine for work spread over processes or machines.

A stage's ``cluster`` parameter is None (run in this process), ``"local:N"`` (a LocalCluster of
N worker processes on this machine, each with an equal share of the cores) or a scheduler
address such as ``"tcp://host:8786"`` (an existing cluster, e.g. one dask-jobqueue started on
SLURM). Tasks are independent pieces of a stage (a shard of features, a chunk of pairs' moments,
a configuration's evaluation) whose results are combined here, in task order, so the result
does not depend on where or in which order the tasks ran. Tasks whose numbers reach the results
do their BLAS arithmetic on one thread: a GEMM's rounding depends on how many threads split it,
and a worker of ``local:2`` has one where this process has all the cores.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from threadpoolctl import ThreadpoolController

from cmr_utils.progress import bar


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


def cores() -> int:
    """The cores this process may use: its CPU affinity, capped by OMP_NUM_THREADS (a Dask worker's share)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(n, int(os.environ.get("OMP_NUM_THREADS") or n)))


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread, so a GEMM's bits do not depend on the cores; the
    process's BLAS libraries are found once (finding them reads /proc: slower than a 1k-pair GEMM)."""
    return _blas().limit(limits=1, user_api="blas")


def _in_threads(fn: Callable, tasks: list[tuple], threads: int) -> Iterator:
    """``fn(*t)`` for each task, in task order, on ``threads`` threads, each on one BLAS thread (set here: the
    BLAS's thread count is one setting for the process, which threadpoolctl leaves to the thread that
    holds it); at most twice ``threads`` results wait to be taken."""
    with one_blas_thread(), ThreadPoolExecutor(threads) as pool:
        pending = collections.deque()
        for t in tasks:
            pending.append(pool.submit(fn, *t))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


TOPIC = "cmr-progress"  # workers' per-item progress, forwarded by the scheduler to the client's bar
_advance: Callable[[int], None] | None = None  # in this process: the running task's share of the bar


def advance(n: int) -> None:
    """Called by a task as it goes (items done since the last call): the stage's bar moves within a task,
    in this process or, through the scheduler, from a Dask worker."""
    if _advance is not None:
        _advance(n)
        return
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):  # not inside a task
        return
    worker.log_event(TOPIC, {"key": str(worker.get_current_task()), "n": int(n)})


def run(fn: Callable, tasks: list[tuple], client=None, desc: str = "", weights: list[int] | None = None,
        progress: bool = True, combine: Callable | None = None, threads: int = 1):
    """``[fn(*t) for t in tasks]`` in task order, on the cluster's workers when ``client`` is given.

    Tasks must be independent and idempotent: a task whose worker dies is run again elsewhere
    (the scheduler's own retry); an error raised by a task stops the stage. ``combine``
    folds the results in task order as they arrive (``combine(total, result)``, the first result
    starting the total) and only the total is returned, so large partial results are not all
    held at once and the total does not depend on which task finished first. Without a client,
    ``threads`` tasks run at once in this process (for tasks that release the GIL). ``weights``
    (e.g. items per task) drive the progress bar; a task that calls ``advance`` (one at a time in this
    process) moves it as it goes, and the rest of its weight is counted when it ends.
    """
    global _advance
    weights = weights or [1] * len(tasks)
    out, total, moved = [], None, [0] * len(tasks)

    def take(i, result):
        nonlocal total
        if combine is None:
            out.append(result)
        else:
            total = result if i == 0 else combine(total, result)

    with bar(total=sum(weights), desc=desc, disable=not progress or not tasks, smoothing=0.1) as b:
        def step(i, n):
            n = min(n, weights[i] - moved[i])  # a retried task reports its items again
            moved[i] += n
            b.update(n)

        def finish(i):
            step(i, weights[i] - moved[i])

        if client is None:
            if threads <= 1:
                for i, t in enumerate(tasks):
                    _advance = functools.partial(step, i)
                    try:
                        take(i, fn(*t))
                    finally:
                        _advance = None
                    finish(i)
            else:
                for i, r in enumerate(_in_threads(fn, tasks, threads)):
                    take(i, r)
                    finish(i)
        else:
            from distributed import as_completed
            futures = client.map(fn, *zip(*tasks), pure=False) if tasks else []
            order = {f.key: i for i, f in enumerate(futures)}
            by_name = {str(k): i for k, i in order.items()}
            client.subscribe_topic(TOPIC, lambda event: by_name.get(event[1]["key"]) is not None and step(
                by_name[event[1]["key"]], event[1]["n"]))
            try:
                done, nxt = {}, 0
                for f in as_completed(futures):
                    done[order[f.key]] = f
                    finish(order[f.key])
                    while nxt in done:
                        take(nxt, done.pop(nxt).result())
                        futures[nxt] = None  # release the worker's copy
                        nxt += 1
            finally:
                client.unsubscribe_topic(TOPIC)
    return out if combine is None else total
