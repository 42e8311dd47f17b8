"""The 04 report's figures and the interactive shared space, on a small demo run and on synthetic results."""
import itertools
import json
import os
import warnings
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from browser import in_browser
from helpers import VIZ_KINDS as KINDS
from matplotlib.text import Text
from PIL import Image

from cmr_utils.report import plots
from cmr_utils.report import search
from cmr_utils.evaluate import results as R


@pytest.fixture
def run_dir(demo_run):
    return demo_run


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


@pytest.mark.slow
def test_every_figure_shows_every_text_kind_without_warnings(run_dir):
    results, galleries = R.load(run_dir), search.galleries(run_dir)
    assert set(galleries) == set(KINDS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = plots.tsne_layout(galleries, seed=0)
        figures = {"recall": plots.recall_by_kind(results), "medr": plots.medr_vs_dim(results),
                   "tsne": plots.tsne_panels(layout), "examples": plots.retrieval_examples(galleries, [0, 1], k=5),
                   "photos": plots.photos_for_recipe(galleries, [0, 1], k=5),
                   "arithmetic": plots.arithmetic_examples(galleries, [["soup", "cake"], ["tomato", "lemon"]])}
        for fig in figures.values():
            fig.canvas.draw()  # constrained layout runs at draw time, where its warnings would come
    assert not [str(w.message) for w in caught]
    for name, fig in figures.items():
        for kind in KINDS:
            assert kind in texts(fig), (name, kind)
    n = len(galleries["title"].index)
    assert len(layout) == 2 * n * len(KINDS) and set(layout.modality) == {"photo", "recipe"}  # every test point
    plt.close("all")


@pytest.mark.slow
def test_report_has_no_warnings_and_links_the_space(run_dir):
    page = (run_dir / "04_visualize.html").read_text()
    assert "Warning" not in page and 'href="space.html"' in page
    outputs = [o for c in json.loads((run_dir / "04_visualize.ipynb").read_text())["cells"] for o in c.get("outputs", [])]
    assert not [o["text"] for o in outputs if o.get("name") == "stderr"]
    assert "query: " in page and "recipe_id" in page  # the try-it cell shows a photo's top recipes


PROBE = """
  for (let i = 0; i < 100 && !(window.Bokeh && Bokeh.documents.length); i++) await new Promise(r => setTimeout(r, 100));
  const models = [...Bokeh.documents[0].all_models], of = t => models.filter(m => m.type === t);
  const shown = () => of('GlyphRenderer').filter(r => r.visible).map(r => r.name).sort();
  const select = of('Select')[0], hover = of('HoverTool')[0], before = shown();
  const kinds = select.options.map(o => Array.isArray(o) ? o[0] : o);
  select.value = kinds.find(k => k !== select.value);
  await new Promise(r => setTimeout(r, 500));  // CustomJS callbacks run asynchronously
  const renderer = of('GlyphRenderer').find(r => r.name === select.value + '|photo');
  await hover.callback.execute(hover, {index: {indices: [0]}, renderer: renderer});
  await new Promise(r => setTimeout(r, 500));
  const box = of('Div').find(d => d.text.includes('<img'));
  return {before: before, after: shown(), kinds: kinds, selected: select.value, hovered: box ? box.text : null,
          points: renderer.data_source.data.x.length};"""


@pytest.mark.slow
def test_space_page_is_offline_and_switches_kinds(run_dir, tmp_path):
    page = run_dir / "space.html"
    text = page.read_text()
    assert page.stat().st_size < 5e6 and "<script src=" not in text and "data:image/jpeg;base64," in text
    got = in_browser(page, tmp_path, PROBE)
    first = search.load(run_dir).config["text_kind"]
    assert sorted(got["kinds"]) == sorted(KINDS)
    assert got["before"] == [f"{first}|photo", f"{first}|recipe"]  # one renderer per modality of the kind shown
    assert got["after"] == [f"{got['selected']}|photo", f"{got['selected']}|recipe"] and got["selected"] != first
    assert 'src="data:image/jpeg;base64,' in got["hovered"] and "photo point" in got["hovered"] and got["points"] == len(search.load(run_dir).index)


def synthetic_results(dims=(10, 50), kinds=("title", "ingredients")):
    """results.csv rows for ``kinds`` (two by default), cca and ridge, where larger dimensions rank better."""
    rows = []
    for kind, model, dim, split, direction in itertools.product(
            kinds, ["cca", "ridge"], dims, ["val", "test"], ["im2recipe", "recipe2im"]):
        medr = 100 / dim + (model == "cca")
        rows.append({"text_kind": kind, "features": "generated", "image_encoder": "e", "text_encoder": "t",
                     "model": model, "shrinkage": 0.0 if model == "cca" else 0.5, "latent_dim": dim,
                     "n_components": dim, "score": "correlation", "split": split, "protocol": "1k",
                     "bag_size": 1000, "fit_on": "train", "direction": direction, "medr": medr, "r1": 10.0, "r5": 20.0, "r10": 30.0})
    return pd.DataFrame(rows)


def test_paper_configuration_is_marked_or_said_missing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        present = plots.recall_by_kind(synthetic_results())
        medr = plots.medr_vs_dim(synthetic_results())
        missing = plots.recall_by_kind(synthetic_results(dims=(2, 16)))
        for fig in (present, medr, missing):
            fig.canvas.draw()
    assert plots.PAPER_LABEL in texts(present) and "not in this run" not in texts(present)
    assert plots.PAPER_LABEL in texts(medr) and "not in this run" in texts(missing)
    stars = [c for ax in medr.axes for c in ax.collections if len(c.get_offsets())]
    assert sum(len(c.get_offsets()) for c in stars) == 2 * 2  # cca panels (2 directions) × 2 kinds at dim 50
    for kind in ("title", "ingredients"):
        assert all(kind in texts(f) for f in (present, medr, missing))
    plt.close("all")


def test_medr_curves_tell_every_score_apart_hubness_corrected_ones_included():
    from cmr_utils.evaluate.retrieval import SCORES
    results = pd.concat([synthetic_results().assign(score=s) for s in SCORES], ignore_index=True)
    fig = plots.medr_vs_dim(results)
    fig.canvas.draw()
    legend = {h.get_label(): (h.get_linestyle(), h.get_marker()) for h in fig.legends[0].legend_handles
              if h.get_label().startswith("score: ")}
    assert sorted(legend) == sorted(f"score: {s}" for s in SCORES) and len(set(legend.values())) == len(SCORES)
    plt.close("all")


def test_tsne_maps_are_one_thread_maps_whatever_the_cores(monkeypatch):
    """A shared report's map must not depend on the machine that drew it: openTSNE's threads (its
    neighbour index, its gradient sums) change the layout, so each kind's map is openTSNE's
    one-thread map, the kinds drawn side by side."""
    from openTSNE import TSNE
    rng, n = np.random.default_rng(0), 550  # 1,100 points: openTSNE's approximate neighbours, built in threads
    index = pd.DataFrame({"recipe_id": [f"r{i}" for i in range(n)], "path": "",
                          "title": [f"{['tomato', 'lemon', 'beef', 'rice'][i % 4]} soup" for i in range(n)]})
    galleries = {kind: SimpleNamespace(photos=rng.normal(size=(n, 8)), recipes=rng.normal(size=(n, 8)),
                                       index=index, label=kind) for kind in KINDS[:2]}
    layouts = []
    for cores in (1, 4):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
        layouts.append(plots.tsne_layout(galleries, seed=0))
    pd.testing.assert_frame_equal(*layouts)
    for kind, g in galleries.items():
        alone = TSNE(n_components=2, perplexity=30, initialization="pca", n_jobs=1, random_state=0).fit(
            np.vstack([g.photos, g.recipes]))
        np.testing.assert_array_equal(layouts[0].loc[layouts[0].kind == kind, ["x", "y"]].to_numpy(), alone)


def test_recipe_groups_are_named_by_distinctive_title_words():
    rng = np.random.default_rng(0)
    Z = np.vstack([rng.normal(0, 0.1, (20, 5)) + 3, rng.normal(0, 0.1, (20, 5)) - 3])
    titles = [f"Tomato Soup with {w}" for w in "abcdefghijklmnopqrst"] + \
             [f"Chocolate Cake and {w}" for w in "abcdefghijklmnopqrst"]
    names = plots.recipe_groups(Z, titles, n_groups=2)
    assert len(set(names[:20])) == 1 and len(set(names[20:])) == 1
    assert {"soup", "tomato"} <= set(names[0].replace("(", " ").split()) and "(20)" in names[0]
    assert {"cake", "chocolate"} <= set(names[-1].replace("(", " ").split())


def test_example_photos_are_square_whatever_their_shape(tmp_path):
    """Real photos are mostly landscape; uncropped they left gaps between the rows of the example grids."""
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (400, 150), "orange").save(path)
    fig, ax = plt.subplots()
    plots.photos._photo(ax, path, "a caption")
    assert ax.images[0].get_array().shape[:2] == (192, 192)
    plt.close(fig)


def test_scraped_titles_draw_without_missing_glyphs(tmp_path):
    """Real Recipe1M titles carry Windows-1252 punctuation read as Latin-1 (\\x96 for an en dash)."""
    caption = plots.photos._caption("Chicken \x96 Rice with \x93Salsa\x94\x81")
    assert caption == "Chicken – Rice with\n“Salsa”"
    fig, ax = plt.subplots()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph")
        ax.set_title(caption)
        fig.savefig(tmp_path / "t.png")
    plt.close(fig)


def test_the_text_kinds_under_the_recall_bars_do_not_run_into_each_other():
    """The real-sample default has six kinds: their names side by side once read "concatingredientsinstructions"."""
    fig = plots.recall_by_kind(synthetic_results(kinds=("title", "ingredients", "instructions", "all", "concat",
                                                        "lexical")))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) == 6
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
