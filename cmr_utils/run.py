"""Run the four notebooks headlessly: jupytext -> papermill -> nbconvert, into ``reports/<run>/``.

    python -m cmr_utils.run params/demo.yaml [--set key=value ...] [--name RUN] [--show-code]

Parameters come from the YAML file (``--set`` overrides single keys) and are checked against the
notebooks' ``parameters`` cells before anything runs. Each notebook gets the keys it declares,
plus ``run_dir`` and ``cache_dir``; the notebooks hand results to each other through files in
``run_dir``. A failing notebook still gets its HTML (with the error) and the index.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from . import params as P
from .report import write_index

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_extract", "02_fit", "03_evaluate", "04_visualize")
PATH_KEYS = ("data_dir", "image_weights", "cache_dir")
KERNEL = "cmr"


def run(params_file: str | Path, overrides: list[str] = (), name: str | None = None,
        show_code: bool = False, reports_dir: str | Path = ROOT / "reports") -> Path:
    """Execute the pipeline; return the run folder. Raises RuntimeError naming the failed notebook."""
    params = P.load(params_file, overrides)
    declared = {nb: P.notebook_parameters(NOTEBOOK_DIR / f"{nb}.py") for nb in NOTEBOOKS}
    P.check(params, declared, source=str(params_file))
    for k in PATH_KEYS:
        if params.get(k):
            params[k] = str(Path(os.path.expandvars(str(params[k]))).expanduser().resolve())
    run_dir = (Path(reports_dir) / (name or Path(params_file).stem)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    params["run_dir"] = str(run_dir)
    params["cache_dir"] = params.get("cache_dir") or str(ROOT / "cache")
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
    _kernel_spec(Path(params["cache_dir"]))

    steps, error = [], None
    for nb in NOTEBOOKS:
        t0 = time.time()
        error = _execute(nb, {k: v for k, v in params.items() if k in declared[nb]}, run_dir)
        _render_html(run_dir / f"{nb}.ipynb", run_dir / f"{nb}.html", show_code)
        steps.append({"notebook": nb, "seconds": round(time.time() - t0, 1), "ok": error is None})
        print(f"[cmr] {nb}: {'ok' if error is None else 'FAILED'} in {steps[-1]['seconds']:.1f} s", flush=True)
        if error is not None:
            break
    write_index(run_dir, steps, params)
    print(f"[cmr] report: {run_dir / 'index.html'}", flush=True)
    if error is not None:
        raise RuntimeError(f"{error} (see {run_dir / (steps[-1]['notebook'] + '.html')})")
    return run_dir


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
    return None


def _render_html(ipynb: Path, html: Path, show_code: bool) -> None:
    import nbformat
    from nbconvert import HTMLExporter
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
    args = ap.parse_args(argv)
    try:
        run(args.params, args.overrides, args.name, args.show_code)
    except (P.ParameterError, RuntimeError, FileNotFoundError) as e:
        print(f"[cmr] error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
