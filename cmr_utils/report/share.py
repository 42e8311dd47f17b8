"""One file to share a run: ``reports/<run>.zip`` with its pages and everything they link to, readable offline.

    python -m cmr_utils share reports/<run>

Figures are embedded in the pages already; what a page reaches by a relative link (the notebook
reports, ``results.csv``, the executed notebooks, a grid's point folders, interactive pages) is
followed from ``index.html`` and packed under ``<run>/`` in the zip. A link to a missing file stays
as broken as it is in the folder; the run's internals (stamps, kernel spec, lock) are left out.
"""
from __future__ import annotations

import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cmr_utils.io import atomic_file


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def local_links(page: Path) -> list[str]:
    """The relative paths a page links to or loads: no scheme, no host, not a fragment of itself."""
    parser = _Links()
    parser.feed(page.read_text(errors="replace"))
    parts = [urlsplit(link) for link in parser.links]
    return [unquote(p.path) for p in parts if not p.scheme and not p.netloc and p.path]


def pack(run_dir: str | Path) -> Path:
    """Write ``<run_dir>.zip`` beside the run folder (atomically) and return its path."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "index.html").is_file():
        raise FileNotFoundError(f"{run_dir / 'index.html'} not found: is {run_dir.name} a finished run?")
    files = linked(run_dir)
    dest = run_dir.parent / f"{run_dir.name}.zip"
    with atomic_file(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(files):
            z.write(f, Path(run_dir.name) / f.relative_to(run_dir))
    return dest


def linked(run_dir: Path) -> set[Path]:
    """``index.html`` and every file inside ``run_dir`` its pages reach by relative links: the report."""
    files, todo = set(), [run_dir / "index.html"]
    while todo:
        f = todo.pop()
        if f in files or not f.is_file() or not f.is_relative_to(run_dir):
            continue
        files.add(f)
        if f.suffix == ".html":
            todo += [(f.parent / link).resolve() for link in local_links(f)]
    return files
