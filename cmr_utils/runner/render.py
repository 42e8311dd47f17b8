"""Rendering: an executed notebook as the HTML page people read, whole in one file so it opens offline.

Figures are embedded by nbconvert; its template's two scripts from a CDN (require.js, MathJax)
serve widgets and LaTeX, which the notebooks do not use, so they are left out: a shared page
then asks the network for nothing.
"""
from __future__ import annotations

from pathlib import Path

from cmr_utils.io import save_text

_OFFLINE = ('{%- extends "index.html.j2" -%}'
            '{% block html_head_js_requirejs %}{% endblock %}{% block html_head_js_mathjax %}{% endblock %}')


def to_html(ipynb: Path, html: Path, show_code: bool) -> None:
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    if not ipynb.exists():
        return
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"offline.html.j2": _OFFLINE})],
                            template_file="offline.html.j2", exclude_input=not show_code,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(ipynb, as_version=4),
                                          resources={"metadata": {"name": ipynb.stem}})
    save_text(html, body)
