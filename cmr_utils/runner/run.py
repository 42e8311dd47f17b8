"""Run the four notebooks headlessly: jupytext -> papermill -> nbconvert, into ``reports/<run>/``.

    python -m cmr_utils run params/demo.yaml [--set key=value ...] [--name RUN] [--show-code] [-j N] [--share]  # cmr_utils.cli

Parameters come from the YAML file (``--set`` overrides single keys) and are checked against the
notebooks' ``parameters`` cells before anything runs. Each notebook gets the keys it declares,
plus ``run_dir`` and ``cache_dir``; the notebooks hand results to each other through files in
``run_dir``. A ``grid:`` mapping in the YAML file (parameter -> list of values) expands into
the cartesian product of its axes, or names its points with what each changes
(``cmr_utils.runner.grid``): each point runs in ``reports/<run>/<point>/``, ``-j N`` at a time, a failing point not stopping the others, and
``reports/<run>/index.html`` collects them. One run at a time writes a run folder: a second run
on it stops at once. A notebook whose parameters, upstream notebooks, package code and data
files are unchanged since its last successful run in the same folder is not run again
(``cmr_utils.runner.stamps``). A failing notebook still gets its HTML (with the error) and the index.
Progress bars go to this terminal, not into the reports (``cmr_utils.runner.kernelspec``); ``--share``
packs the run into ``reports/<run>.zip`` (``cmr_utils.report.share``).

This module is the order of work (the command line is ``cmr_utils.cli``); each step is a module of its own.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from cmr_utils.runner import kernelspec as kernel
from cmr_utils.runner import preflight
from cmr_utils.runner import render
from cmr_utils.runner import stamps
from cmr_utils.report import runs_page
from cmr_utils.report import tracking
from cmr_utils.cluster import connect, describe
from cmr_utils.runner import params as P
from cmr_utils.runner.grid import expand
from cmr_utils.io import save_text
from cmr_utils.runner.notebooks import NOTEBOOKS, declared
from cmr_utils.report.index import keep_previous, settle, write_grid_index, write_index
from cmr_utils.report.share import pack

from cmr_utils.paths import ROOT


def run(params_file: str | Path, overrides: list[str] = (), name: str | None = None,
        show_code: bool = False, reports_dir: str | Path = ROOT / "reports", jobs: int = 1,
        share: bool = False) -> Path:
    """Execute the pipeline, or every point of its grid; return the run folder.

    Raises RuntimeError naming the failed notebook (or the failed grid points) after every
    point has run and the index is written. ``share`` packs a successful run into one zip.
    """
    run_dir = run_folder(reports_dir, name or Path(params_file).stem)
    params = P.load(params_file, overrides)
    tracking_uri = tracking.check(params.pop("tracking_uri", None))  # the runner's, not a notebook's parameter
    given = {k: params[k] for k in (o.partition("=")[0].strip() for o in overrides) if k not in ("grid", "tracking_uri")}
    P.check(given, declared(), "--set")  # a mistake on the command line is blamed there, not on the file
    points = expand(params, str(params_file))
    found = list(dict.fromkeys(p for _, point in points for p in preflight.problems(point)))
    if found:  # before the run folder is touched: its last report stays as it was
        raise P.ParameterError("; ".join(found) + f" (nothing ran; {run_dir.name} is unchanged)")
    with claim(run_dir, Path(reports_dir).resolve()), _cluster(points) as (points, ran_on):
        try:
            _run(points, run_dir, show_code, jobs, ran_on)
        finally:  # a failed run is listed and logged too, as failed
            print(f"[cmr] runs: {runs_page.write(reports_dir)}", flush=True)
            if tracking_uri:
                rid = tracking.log(tracking_uri, run_dir, [label for label, _ in points if label])
                print(f"[cmr] logged to MLflow at {tracking_uri}: run {rid}", flush=True)
        if share:
            print(f"[cmr] shared: {pack(run_dir)}", flush=True)
    return run_dir


def _run(points: list[tuple[str, dict]], run_dir: Path, show_code: bool, jobs: int, ran_on: dict) -> None:
    if len(points) == 1 and not points[0][0]:
        steps, error = run_point(points[0][1], run_dir, show_code, ran_on=ran_on)
        print(f"[cmr] report: {run_dir / 'index.html'}", flush=True)
        if error is not None:
            raise RuntimeError(f"{error} (see {run_dir / (steps[-1]['notebook'] + '.html')})")
        return
    done = []
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(run_point, params, run_dir / label, show_code, True, ran_on): label
                   for label, params in points}
        for i, future in enumerate(as_completed(futures), 1):
            steps, error = future.result()
            done.append({"point": futures[future], "steps": steps, "error": error})
            print(f"[cmr] [{i}/{len(points)}] {futures[future]}: {'ok' if error is None else error} "
                  f"({sum(s['seconds'] for s in steps):.0f} s)", flush=True)
    order = {label: i for i, (label, _) in enumerate(points)}
    done.sort(key=lambda d: order[d["point"]])
    write_grid_index(run_dir, done, dict(points), ran_on)
    print(f"[cmr] report: {run_dir / 'index.html'}", flush=True)
    failed = [d["point"] for d in done if d["error"] is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(points)} grid points failed: {', '.join(failed)}")


@contextlib.contextmanager
def _cluster(points: list[tuple[str, dict]]):
    """Start the run's ``cluster: local:N`` once, here, for every notebook and grid point (they join its
    scheduler), or check that a ``tcp://`` scheduler answers; yield (points, what the index says about it)."""
    wanted = {p.get("cluster") for _, p in points}
    asked = next(iter(wanted)) if len(wanted) == 1 else None
    if not asked:
        yield points, {}
        return
    with connect(asked) as client:
        ran_on = {"asked": asked, **describe(client)}
        print(f"[cmr] Dask cluster {asked}: {ran_on['workers']} workers, dashboard {ran_on['dashboard']}", flush=True)
        yield [(label, {**p, "cluster": client.scheduler.address}) for label, p in points], ran_on


def run_folder(reports_dir: str | Path, name: str) -> Path:
    """``reports_dir/name``, resolved; a name that would leave ``reports_dir`` (absolute, '.', '..', a link out)
    is a ParameterError."""
    root = Path(reports_dir).resolve()
    parts = re.split(r"[/\\]", str(name))
    run_dir = (root / name).resolve()
    if Path(name).is_absolute() or any(p in ("", ".", "..") for p in parts) or not run_dir.is_relative_to(root):
        raise P.ParameterError(f"--name {name!r}: a run's name is a folder inside {root} (e.g. 'demo' or 'grid/point'): "
                               "not an absolute path, and no '.', '..' or empty part")
    return run_dir


@contextlib.contextmanager
def claim(run_dir: Path, root: Path | None = None):
    """Hold ``run_dir/.lock`` (which names this process) for the whole run: a second run on the same folder, or on
    a folder inside or around it (up to ``root``), stops at once rather than interleave its files with ours."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / ".lock", blocking=False, on_acquired=_own)
    try:
        lock.acquire()
    except Timeout:
        raise RuntimeError(_in_use(run_dir, run_dir)) from None
    around = [a / ".lock" for a in run_dir.parents if root is None or (a.is_relative_to(root) and a != root)]
    busy = next((f.parent for f in [*around, *run_dir.rglob(".lock")]
                 if f != run_dir / ".lock" and f.is_file() and _held(f)), None)
    if busy is not None:
        lock.release()
        raise RuntimeError(_in_use(run_dir, busy))
    try:
        yield
    finally:
        lock.release()


def _held(lock_file: Path) -> bool:
    """Whether another run holds ``lock_file`` now."""
    lock = FileLock(lock_file, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:  # not ours to lock (read-only): no run of ours holds it
        return False
    lock.release()
    return False


def _in_use(run_dir: Path, holder: Path) -> str:
    pid = "?"
    with contextlib.suppress(OSError):
        pid = (holder / ".lock").read_text().strip() or pid
    shown = [p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p for p in (run_dir, holder)]
    where = "" if holder == run_dir else f", inside or around {shown[1]},"
    return f"{shown[0]}{where} is in use by another run (pid {pid}); wait for it or pick another --name"


def _own(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def _limit_threads(n: int) -> None:
    """Give each parallel point's kernels an equal share of the cores: oversubscribed BLAS threads run slower."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def expand_path(value: str) -> str:
    """Environment variables in a path parameter, shell-style ``${VAR:-default}`` included."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), value)
    return os.path.expandvars(value)


def run_point(params: dict, run_dir: Path, show_code: bool = False, quiet: bool = False, ran_on: dict | None = None):
    """Run the four notebooks for one set of parameters into ``run_dir``; return (steps, error or None).

    ``ran_on`` describes the runner's Dask cluster for the index, written before the first notebook
    too so that its dashboard link is there while the run lasts. Where the work runs does not
    change its results, so ``cluster`` is left out of the up-to-date stamps.
    """
    notebooks = declared()
    params = dict(params)
    for k in P.PATH_KEYS:
        if params.get(k):
            params[k] = str(Path(expand_path(str(params[k]))).expanduser().resolve())
    run_dir.mkdir(parents=True, exist_ok=True)
    keep_previous(run_dir)
    params["run_dir"] = str(run_dir)
    params["cache_dir"] = params.get("cache_dir") or str(ROOT / "cache")
    shown = {**params, "cluster": ran_on["asked"]} if ran_on else params  # the value asked, not this run's address
    save_text(run_dir / "params.yaml", yaml.safe_dump(shown, sort_keys=True))
    kernel.install(run_dir)
    steps, error, stamp = [], None, stamps.inputs_key(params)
    write_index(run_dir, steps, shown, ran_on)
    for nb in NOTEBOOKS:
        t0 = time.time()
        nb_params = {k: v for k, v in params.items() if k in notebooks[nb]}
        stamp = stamps.notebook_key(stamp, nb, {k: v for k, v in nb_params.items() if k != "cluster"}, show_code)
        if stamps.up_to_date(run_dir, nb, stamp):
            state = "up to date"
        else:
            stamps.forget(run_dir, nb)
            error = kernel.execute(nb, nb_params, run_dir)
            render.to_html(run_dir / f"{nb}.ipynb", run_dir / f"{nb}.html", show_code)
            state = "ok" if error is None else "FAILED"
            if error is None:
                stamps.record(run_dir, nb, stamp)
        steps.append({"notebook": nb, "seconds": round(time.time() - t0, 1), "ok": error is None, "state": state})
        if not quiet:
            print(f"[cmr] {nb}: {state} in {steps[-1]['seconds']:.1f} s", flush=True)
        if error is not None:
            break
    settle(run_dir, error is None)
    write_index(run_dir, steps, shown, ran_on)
    runs_page.record(run_dir, steps)
    return steps, error
