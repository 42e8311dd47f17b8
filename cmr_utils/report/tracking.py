"""Logging a finished run to MLflow, when ``--set tracking_uri=...`` asks for it.

Each run becomes an MLflow run named after its folder (experiment ``cmr``): its parameters, the chosen
configuration's val and test metrics (mean and std over bags, both directions, at each split's main
protocol) and that configuration as ``chosen.*`` tags, the code commit and data fingerprint as
tags, and its HTML pages and ``results.csv`` as artifacts. A grid is one parent run with a nested
run per point. ``tracking_uri`` is a folder (a local file store, e.g. ``mlruns``), a ``file:`` or
``sqlite:`` URI, or a tracking server's address. MLflow is an optional extra: without it the runner
stops before anything runs (``check``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cmr_utils.evaluate import results as R
from cmr_utils.report import runs_page
from cmr_utils.report import tables as T
from cmr_utils.runner.params import ParameterError

EXPERIMENT = "cmr"
INSTALL = "pip install -e '.[mlflow]' (or: make mlflow)"


def check(uri: str | None) -> str | None:
    """The tracking URI to log to (a folder made a ``file:`` URI), or None; raises RuntimeError, one line saying what
    to install, when MLflow is missing."""
    if uri is None:
        return None
    if not isinstance(uri, str) or not uri:
        raise ParameterError(f"parameter 'tracking_uri' must be a folder or an MLflow tracking URI, got {uri!r}")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise RuntimeError(f"tracking_uri needs MLflow, which is not installed: {INSTALL}") from None
    if not re.match(r"^[a-z][a-z0-9+.-]*:", uri):  # a folder
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def log(uri: str, run_dir: Path, points: list[str] = ()) -> str:
    """Log the run in ``run_dir`` (its ``points``' folders nested under it, for a grid); return its MLflow run id."""
    from mlflow import MlflowClient
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # asked for by name: MLflow 3 otherwise refuses it
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT, _artifacts_beside(uri))
    parent = _log(client, exp_id, run_dir, run_dir.name)
    for p in points:
        _log(client, exp_id, run_dir / p, p, {"mlflow.parentRunId": parent})
    return parent


def _artifacts_beside(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside its file (MLflow's default is ./mlruns under the current folder)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def _log(client, exp_id: str, run_dir: Path, name: str, tags: dict | None = None) -> str:
    s = runs_page.summary(run_dir)
    run = client.create_run(exp_id, run_name=name, tags={**(tags or {}), "commit": s["commit"],
                                                         "data_fingerprint": s["data"], "status": s["status"],
                                                         "run_dir": str(run_dir)})
    rid = run.info.run_id
    try:
        from mlflow.entities import Metric, Param, RunTag
        from cmr_utils.report.compare import params
        values = {k: str(v)[:6000] for k, v in sorted(params(run_dir).items()) if k not in ("run_dir", "cache_dir")}
        metrics, chosen = _chosen(run_dir)
        client.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in values.items()],
                         tags=[RunTag(f"chosen.{k}", str(v)) for k, v in chosen.items()])
        for f in sorted(run_dir.glob("*.html")) + sorted(run_dir.glob("results.csv")):
            client.log_artifact(rid, str(f))
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    client.set_terminated(rid, "FINISHED" if s["status"].startswith("complete") else "FAILED")
    return rid


def _chosen(run_dir: Path) -> tuple[dict[str, float], dict]:
    """({split.direction.metric[_std]: value} of the chosen configuration, the configuration); empty without results."""
    if not (run_dir / "results.csv").exists():
        return {}, {}
    res = R.load(run_dir)
    c = T.chosen_config(res)
    metrics = {}
    for split in ("val", "test"):
        for _, r in T.rows_of(res, c, split).iterrows():
            for m in T.METRICS:
                metrics[f"{split}.{r.direction}.{m}"] = float(r[m])
                metrics[f"{split}.{r.direction}.{m}_std"] = float(r[f"{m}_std"])
    return metrics, c.to_dict()
