"""Up-to-date stamps: a notebook whose inputs are unchanged since its last success in a run folder is not run again."""
from __future__ import annotations

import hashlib
from pathlib import Path

from cmr_utils.paths import PACKAGE, sources
from cmr_utils.io import content_hash, key, save_text
from cmr_utils.runner.notebooks import source



def inputs_key(params: dict) -> str:
    """What the notebooks' outputs depend on besides their parameters: the package code, the data files and the
    content of the weights a path parameter names (replaced under the same name, they rerun extraction)."""
    code = [(str(f.relative_to(PACKAGE)), f.read_bytes()) for f in sources()]
    data, given = params.get("data_dir"), params.get("given_dir")
    files = [Path(data) / n for n in ("layer1.json", "layer2.json", "det_ingrs.json")] if data else []
    files += sorted(Path(data, "images").rglob("*")) if data else []  # a replaced photo reruns extraction
    files += sorted(Path(given).iterdir()) if given and Path(given).is_dir() else []
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    weights = [content_hash(p, params.get("cache_dir")) for p in (params.get("image_weights"), params.get("text_encoder"))
               if isinstance(p, str) and Path(p).expanduser().exists()]
    return key([(name, hashlib.sha1(b).hexdigest()) for name, b in code], stats, *([weights] if weights else []))


def notebook_key(upstream: str, nb: str, parameters: dict, show_code: bool) -> str:
    """A notebook's stamp: chained from the notebooks before it, so a change upstream reruns everything after."""
    return key(upstream, parameters, show_code, source(nb).read_text())


def up_to_date(run_dir: Path, nb: str, stamp: str) -> bool:
    path = run_dir / ".stamps" / nb
    return path.exists() and path.read_text() == stamp and (run_dir / f"{nb}.html").exists()


def forget(run_dir: Path, nb: str) -> None:
    """Drop the stamp before running: a run that dies half-way must not leave the old one claiming success."""
    (run_dir / ".stamps" / nb).unlink(missing_ok=True)


def record(run_dir: Path, nb: str, stamp: str) -> None:
    save_text(run_dir / ".stamps" / nb, stamp)
