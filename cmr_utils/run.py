"""Run the four notebooks headlessly: jupytext -> papermill -> nbconvert, into ``reports/<run>/``.

    python -m cmr_utils.run params/demo.yaml [--set key=value ...] [--name RUN] [--show-code] [-j N]

Parameters come from the YAML file (``--set`` overrides single keys) and are checked against the
notebooks' ``parameters`` cells before anything runs. Each notebook gets the keys it declares,
plus ``run_dir`` and ``cache_dir``; the notebooks hand results to each other through files in
``run_dir``. A ``grid:`` mapping in the YAML file (parameter -> list of values) expands into
the cartesian product of its axes: each point runs in ``reports/<run>/<point>/``, ``-j N`` at a
time, a failing point not stopping the others, and ``reports/<run>/index.html`` collects them.
A notebook whose parameters, upstream notebooks, package code and data files are
unchanged since its last successful run in the same folder is not run again. A failing
notebook still gets its HTML (with the error) and the index.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from . import params as P
from .io import key
from .report import write_grid_index, write_index

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_extract", "02_fit", "03_evaluate", "04_visualize")
PATH_KEYS = ("data_dir", "image_weights", "cache_dir", "given_dir")
KERNEL = "cmr"


def run(params_file: str | Path, overrides: list[str] = (), name: str | None = None,
        show_code: bool = False, reports_dir: str | Path = ROOT / "reports", jobs: int = 1) -> Path:
    """Execute the pipeline, or every point of its grid; return the run folder.

    Raises RuntimeError naming the failed notebook (or the failed grid points) after every
    point has run and the index is written.
    """
    points = expand(P.load(params_file, overrides), str(params_file))
    run_dir = (Path(reports_dir) / (name or Path(params_file).stem)).resolve()
    if len(points) == 1 and not points[0][0]:
        steps, error = run_point(points[0][1], run_dir, show_code)
        print(f"[cmr] report: {run_dir / 'index.html'}", flush=True)
        if error is not None:
            raise RuntimeError(f"{error} (see {run_dir / (steps[-1]['notebook'] + '.html')})")
        return run_dir
    done = []
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(run_point, params, run_dir / label, show_code, True): label for label, params in points}
        for i, future in enumerate(as_completed(futures), 1):
            steps, error = future.result()
            done.append({"point": futures[future], "steps": steps, "error": error})
            print(f"[cmr] [{i}/{len(points)}] {futures[future]}: {'ok' if error is None else error} "
                  f"({sum(s['seconds'] for s in steps):.0f} s)", flush=True)
    order = {label: i for i, (label, _) in enumerate(points)}
    done.sort(key=lambda d: order[d["point"]])
    write_grid_index(run_dir, done, dict(points))
    print(f"[cmr] report: {run_dir / 'index.html'}", flush=True)
    failed = [d["point"] for d in done if d["error"] is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(points)} grid points failed: {', '.join(failed)}")
    return run_dir


def _limit_threads(n: int) -> None:
    """Give each parallel point's kernels an equal share of the cores: oversubscribed BLAS threads run slower."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def expand(params: dict, source: str) -> list[tuple[str, dict]]:
    """[(label, parameters)] of every grid point: the cartesian product of the ``grid`` axes over the rest.

    Every point is checked against the notebooks' parameters before anything runs; without a
    ``grid`` there is one point labelled ''.
    """
    params = dict(params)
    grid = params.pop("grid", None) or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise P.ParameterError(f"{source}: 'grid' must map parameter names to non-empty lists of values")
    declared = {nb: P.notebook_parameters(NOTEBOOK_DIR / f"{nb}.py") for nb in NOTEBOOKS}
    axes = list(grid)
    points = []
    for values in itertools.product(*(grid[a] for a in axes)):
        point = {**params, **dict(zip(axes, values))}
        P.check(point, declared, source)
        label = "_".join(f"{a}-{_slug(v)}" for a, v in zip(axes, values))
        points.append((label, point))
    return points


def expand_path(value: str) -> str:
    """Environment variables in a path parameter, shell-style ``${VAR:-default}`` included."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), value)
    return os.path.expandvars(value)


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", json.dumps(value) if not isinstance(value, str) else value).strip("-")


def run_point(params: dict, run_dir: Path, show_code: bool = False, quiet: bool = False):
    """Run the four notebooks for one set of parameters into ``run_dir``; return (steps, error or None)."""
    declared = {nb: P.notebook_parameters(NOTEBOOK_DIR / f"{nb}.py") for nb in NOTEBOOKS}
    params = dict(params)
    for k in PATH_KEYS:
        if params.get(k):
            params[k] = str(Path(expand_path(str(params[k]))).expanduser().resolve())
    run_dir.mkdir(parents=True, exist_ok=True)
    params["run_dir"] = str(run_dir)
    params["cache_dir"] = params.get("cache_dir") or str(ROOT / "cache")
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
    _kernel_spec(Path(params["cache_dir"]))
    steps, error, upstream = [], None, _inputs_key(params)
    for nb in NOTEBOOKS:
        t0 = time.time()
        nb_params = {k: v for k, v in params.items() if k in declared[nb]}
        upstream = key(upstream, nb_params, show_code, (NOTEBOOK_DIR / f"{nb}.py").read_text())
        stamp = run_dir / ".stamps" / nb
        if stamp.exists() and stamp.read_text() == upstream and (run_dir / f"{nb}.html").exists():
            state = "up to date"
        else:
            stamp.unlink(missing_ok=True)
            error = _execute(nb, nb_params, run_dir)
            _render_html(run_dir / f"{nb}.ipynb", run_dir / f"{nb}.html", show_code)
            state = "ok" if error is None else "FAILED"
            if error is None:
                stamp.parent.mkdir(exist_ok=True)
                stamp.write_text(upstream)
        steps.append({"notebook": nb, "seconds": round(time.time() - t0, 1), "ok": error is None, "state": state})
        if not quiet:
            print(f"[cmr] {nb}: {state} in {steps[-1]['seconds']:.1f} s", flush=True)
        if error is not None:
            break
    write_index(run_dir, steps, params)
    return steps, error


def _inputs_key(params: dict) -> str:
    """What the notebooks' outputs depend on besides their parameters: the package code and the data files."""
    code = [(f.name, f.read_bytes()) for f in sorted((ROOT / "cmr_utils").glob("*.py"))]
    data, given = params.get("data_dir"), params.get("given_dir")
    files = [Path(data) / "layer1.json", Path(data) / "layer2.json"] if data else []
    files += sorted(Path(given).iterdir()) if given and Path(given).is_dir() else []
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return key([(name, hashlib.sha1(b).hexdigest()) for name, b in code], stats)


def _execute(nb: str, parameters: dict, run_dir: Path) -> str | None:
    import jupytext
    import papermill as pm
    source = jupytext.read(NOTEBOOK_DIR / f"{nb}.py")
    source.metadata["kernelspec"] = {"name": KERNEL, "display_name": "cmr", "language": "python"}
    try:
        pm.execute_notebook(source, str(run_dir / f"{nb}.ipynb"), parameters=parameters,
                            kernel_name=KERNEL, cwd=str(run_dir), progress_bar=False)
    except pm.PapermillExecutionError as e:
        return f"{nb} failed: {e.ename}: {e.evalue}"
    except Exception as e:  # the kernel died, or papermill could not start it: still report, never hang
        return f"{nb} failed: {type(e).__name__}: {e}"
    return None


def _render_html(ipynb: Path, html: Path, show_code: bool) -> None:
    import nbformat
    from nbconvert import HTMLExporter
    if not ipynb.exists():
        return
    exporter = HTMLExporter(exclude_input=not show_code, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(ipynb, as_version=4))
    html.write_text(body)


def _kernel_spec(cache_dir: Path) -> None:
    """A kernel bound to this interpreter, so the notebooks run in the same environment as the runner."""
    spec_dir = cache_dir / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cmr", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(cache_dir / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cmr_utils.run", description=__doc__.split("\n")[0])
    ap.add_argument("params", help="YAML file of parameters, e.g. params/demo.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one parameter (value parsed as YAML); repeatable")
    ap.add_argument("--name", help="run name: the folder under reports/ (default: the params file's stem)")
    ap.add_argument("--show-code", action="store_true", help="keep code cells in the HTML reports")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="grid points run in parallel (default 1)")
    args = ap.parse_args(argv)
    try:
        run(args.params, args.overrides, args.name, args.show_code, jobs=args.jobs)
    except (P.ParameterError, RuntimeError, FileNotFoundError) as e:
        print(f"[cmr] error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
