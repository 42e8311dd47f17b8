"""The shared space to explore: ``run_dir/space.html``, one self-contained page (Bokeh, inline resources).

The t-SNE of every test photo and recipe, per text kind (a selector switches kinds: one
renderer per modality per kind); hovering a point shows its recipe's title, group and photo
beside the plot. Photos are embedded as small JPEG data URIs, so the page works offline and
can be mailed; ``max_photos`` (seeded) bounds its size on large test sets.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, Div, HoverTool, Select
from bokeh.plotting import figure
from bokeh.resources import INLINE
from bokeh.transform import linear_cmap

from cmr_utils.report import plots
from cmr_utils.report import search
from cmr_utils.data.photos import load_image
from cmr_utils.io import save_text

MARKERS = {"photo": "circle", "recipe": "x"}

HOVER_JS = """
const i = cb_data.index.indices[0];
if (i === undefined) return;
const r = cb_data.renderer.data_source.data.row[i], t = info.data;
const img = t.thumb[r] ? `<img src="${t.thumb[r]}" style="width:${px}px;height:auto;display:block">` : '(photo not embedded)';
box.text = `${img}<p style="max-width:240px"><b>${t.title[r]}</b><br>${t.group[r]}<br>` +
           `<span style="color:grey">${cb_data.renderer.name.split('|')[1]} point</span></p>`;
"""


def write(run_dir, layout=None, seed: int = 0, thumb_px: int = 96, max_photos: int = 1500) -> Path:
    """Write ``run_dir/space.html`` from a ``plots.tsne_layout`` (computed from the run if not given)."""
    run_dir = Path(run_dir)
    if layout is None:
        layout = plots.tsne_layout(search.galleries(run_dir), seed=seed)
    colours = plots.group_colours(layout)
    pairs = layout.drop_duplicates("pair").reset_index(drop=True)
    keep = np.random.default_rng(seed).permutation(len(pairs))[:max_photos]
    thumbs = [""] * len(pairs)
    for i in keep:
        thumbs[i] = _thumbnail(pairs.path[i], thumb_px)
    info = ColumnDataSource({"title": [html.escape(t) for t in pairs.title],
                             "group": [html.escape(g) for g in pairs.group], "thumb": thumbs})
    layout = layout.assign(row=layout.pair.map({p: i for i, p in enumerate(pairs.pair)}).astype(np.int32),
                           code=layout.group.map({g: i for i, g in enumerate(colours)}).astype(np.int32),
                           x=layout.x.astype(np.float32), y=layout.y.astype(np.float32))
    colour = linear_cmap("code", list(colours.values()), low=-0.5, high=len(colours) - 0.5)  # code i → colour i
    kinds = list(dict.fromkeys(layout.kind))
    plot = figure(width=900, height=820, tools="pan,wheel_zoom,box_zoom,reset,save",
                  active_scroll="wheel_zoom", toolbar_location="above")
    plot.axis.visible = plot.grid.visible = False
    plot.x_range.only_visible = plot.y_range.only_visible = True  # fit the kind shown, not every kind
    renderers = []
    for kind in kinds:
        for modality, marker in MARKERS.items():
            d = layout[(layout.kind == kind) & (layout.modality == modality)]
            source = ColumnDataSource({c: d[c].to_numpy() for c in ("x", "y", "row", "code")})  # binary-encoded
            renderers.append(plot.scatter("x", "y", source=source, marker=marker, size=7, color=colour,
                                          alpha=0.75, line_width=1.5 if marker == "x" else 0,
                                          name=f"{kind}|{modality}", visible=kind == kinds[0]))
    box = Div(text="<p>Hover a point: its recipe and photo appear here.</p>", width=260)
    plot.add_tools(HoverTool(renderers=renderers, tooltips=None,
                             callback=CustomJS(args=dict(info=info, box=box, px=thumb_px), code=HOVER_JS)))
    spaces = dict(zip(layout.kind, layout.space))
    select = Select(title="text kind (its configuration chosen on val)", value=kinds[0],
                    options=[(k, spaces[k]) for k in kinds], width=420)
    select.js_on_change("value", CustomJS(args=dict(renderers=renderers), code=(
        "for (const r of renderers) r.visible = r.name.split('|')[0] === cb_obj.value;")))
    swatches = "".join(f"<span style='white-space:nowrap;margin-right:12px'><span style='display:inline-block;"
                       f"width:10px;height:10px;background:{c}'></span> {html.escape(g)}</span> "
                       for g, c in colours.items())
    header = Div(width=1180, text=(
        f"<h2>The shared space of {html.escape(run_dir.name)}</h2><p>t-SNE of the test photos (●) and recipes (×), "
        f"{len(pairs)} pairs; colour: recipe group (clusters of the recipes' latent text vectors, named by their "
        f"most distinctive title words, recipes in the group). Scroll to zoom.</p><p>{swatches}</p>"))
    page = column(header, select, row(plot, box))
    text, end = file_html(page, resources=INLINE, title=f"shared space: {run_dir.name}").rsplit("</body>", 1)
    path = run_dir / "space.html"
    # BokehJS holds "</body>" in a string; as "<\/body>" (the same in JS) only the page's own closes the body,
    # so a tool that splices markup before "</body>" cannot land inside the script
    save_text(path, text.replace("</body>", "<\\/body>") + "</body>" + end)
    return path


def _thumbnail(path: str, px: int) -> str:
    """A photo as a small JPEG data URI ('' when it cannot be read: given features need no photo files)."""
    try:
        im = load_image(path)
    except ValueError:
        return ""
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
