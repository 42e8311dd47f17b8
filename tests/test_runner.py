"""What people share from a run: pages without log noise, progress on the terminal instead, one zip that opens offline."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from helpers import SMALL

from cmr_utils.paths import ROOT
from cmr_utils.report import share
from cmr_utils.runner.notebooks import NOTEBOOKS


def broken_links(folder: Path) -> list[str]:
    """Every relative href or src of every page under ``folder`` that does not lead to a file inside it."""
    folder, broken = folder.resolve(), []
    for page in sorted(folder.rglob("*.html")):
        for link in share.local_links(page):
            target = (page.parent / link).resolve()
            if not (target.is_file() and target.is_relative_to(folder)):
                broken.append(f"{page.relative_to(folder)} -> {link}")
    return broken


def test_share_packs_the_pages_and_what_they_link_to(tmp_path):
    run = tmp_path / "reports" / "r"
    pages = {
        "index.html": "<a href='01_extract.html'>1</a> <a href='results.csv'>csv</a> <a href='p/index.html'>point</a> "
                      "<a href='https://example.org/'>web</a> <a href='#top'>top</a> <img src='data:image/png;base64,AA'>",
        "01_extract.html": '<a href="space.html#pick">space</a> <a href="missing.html">gone</a>',
        "space.html": "<p>an interactive page</p>",
        "results.csv": "medr\n1\n",
        "p/index.html": "<a href='../results.csv'>all</a> <img src='fig%201.png'>",
        "p/fig 1.png": "png",
        ".stamps/01_extract": "key", ".jupyter/kernels/cmr/kernel.json": "{}", ".lock": "1", "features.json": "{}",
    }
    for name, text in pages.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    assert share.pack(run) == tmp_path / "reports" / "r.zip"
    with zipfile.ZipFile(tmp_path / "reports" / "r.zip") as z:
        z.extractall(tmp_path / "elsewhere")
        assert sorted(z.namelist()) == [f"r/{n}" for n in sorted(
            ["index.html", "01_extract.html", "space.html", "results.csv", "p/index.html", "p/fig 1.png"])]
    assert broken_links(tmp_path / "elsewhere" / "r") == ["01_extract.html -> missing.html"]  # as broken as at home


@pytest.mark.slow
def test_clean_run_pages_progress_on_the_terminal_and_one_zip(tmp_path, cli):
    params = tmp_path / "p.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\n")  # a fresh cache: every progress bar runs
    name = "clean"
    run_dir, zipped = tmp_path / "reports" / name, tmp_path / "reports" / f"{name}.zip"
    cmd = cli("run", params, "--name", name, "--share", *(a for s in SMALL for a in ("--set", s)))
    out = subprocess.run(cmd, cwd=tmp_path, env=cli.env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    for bar in ("demo corpus", "train images (all) · efficientnet-lite0", "train title · minilm", "evaluate"):
        assert f"{bar}: 100%" in out.stderr, bar  # progress reached the runner's terminal...
    assert "Loading weights" not in out.stderr and "without encryption" not in out.stderr
    for nb in NOTEBOOKS:  # ...and not the reports
        page = (run_dir / f"{nb}.html").read_text()
        outputs = [o for c in nbformat.read(run_dir / f"{nb}.ipynb", as_version=4).cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("name") == "stderr"], nb
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page, nb
        assert not re.findall(r"[A-Za-z]+Warning\b", page), nb
        assert not re.findall(r"""\bsrc=["']https?:""", page), nb  # nothing fetched from the network
    with zipfile.ZipFile(zipped) as z:
        z.extractall(tmp_path / "elsewhere")
    shared = tmp_path / "elsewhere" / name
    assert {"index.html", "results.csv", *(f"{nb}.html" for nb in NOTEBOOKS)} <= {p.name for p in shared.iterdir()}
    assert broken_links(shared) == []


def test_a_failed_run_keeps_the_previous_complete_report_readable(tmp_path, monkeypatch):
    """A run that fails after touching its folder leaves the last complete report whole, in previous/, marked
    as the previous one and linked from the failed run's index; the next complete run drops the copy."""
    from cmr_utils.runner import run as R
    version = {"n": 0}

    def execute(nb, params, run_dir):
        (run_dir / f"{nb}.ipynb").write_text(f"run {version['n']}")
        return "boom" if version["n"] == 2 and nb == "03_evaluate" else None

    monkeypatch.setattr(R.kernel, "execute", execute)
    monkeypatch.setattr(R.render, "to_html", lambda ipynb, html, show: html.write_text(ipynb.read_text()))
    run_dir = tmp_path / "demo"
    for n in (1, 2):
        version["n"] = n
        steps, error = R.run_point({"n_bags": n}, run_dir)
    assert error == "boom" and (run_dir / "03_evaluate.html").read_text() == "run 2"
    previous = run_dir / "previous"
    assert (previous / "03_evaluate.html").read_text() == "run 1" and (previous / "04_visualize.html").exists()
    assert "The previous complete report" in (previous / "index.html").read_text()
    assert "href='previous/index.html'" in (run_dir / "index.html").read_text()
    assert broken_links(previous) == ["index.html -> ../index.html"]  # back to the failed run, outside the copy
    version["n"] = 3
    assert R.run_point({"n_bags": 3}, run_dir)[1] is None and not previous.exists()


@pytest.mark.parametrize("verb", ["run", "search", "share", "compare", "synthetic"])
def test_every_verb_answers_help_without_loading_torch(verb):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cmr_utils", verb, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"python -m cmr_utils {verb}" in done.stdout, done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if line.rsplit("|", 1)[-1].strip() == "torch"]


@pytest.mark.parametrize("argv", [["share", "{tmp}/missing"], ["compare", "{tmp}/a", "{tmp}/b"],
                                  ["search", "{tmp}/nowhere", "soup"], ["run", "{tmp}/missing.yaml"]])
def test_every_verb_reports_an_error_in_one_line(tmp_path, capsys, argv):
    from cmr_utils import cli
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[cmr] error: ") and err.count("\n") == 1, err
