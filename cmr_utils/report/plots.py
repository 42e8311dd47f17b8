"""Figures for the report: recall by text kind, medR against latent dimension, t-SNE, retrieval examples.

Every figure shows every text kind of the run, each in its configuration chosen on val; the
example figures take ``search.Gallery`` objects (one per kind, same test pairs in the same order)
and pair indices into them.
"""
from __future__ import annotations

import itertools
import re
import textwrap
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator
from PIL import ImageOps
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from cmr_utils.data.photos import load_image
from cmr_utils.progress import bar as progress_bar
from cmr_utils.evaluate.results import CONFIG_COLUMNS, best_per_kind, main_rows, ranked

PAPER = {"model": "cca", "latent_dim": 50, "score": "correlation"}
PAPER_LABEL = "paper: cca, dim 50, correlation"
DIRECTIONS = {"im2recipe": "image → recipe", "recipe2im": "recipe → image"}
MODALITIES = {"photo": "o", "recipe": "x"}
STOP_WORDS = set("and with the for from a an of in on to or my our your easy best recipe style quick simple "
                 "homemade made".split())


def paper_vs_chosen(results: pd.DataFrame, split: str = "test", paper_dim: int = 50) -> pd.DataFrame:
    """Per text kind: the paper's configuration (plain CCA, dim 50, correlation) beside the one chosen on val."""
    df = main_rows(results, split, "im2recipe")
    keys = ["model", "shrinkage", "latent_dim", "score"]
    rows = []
    for kind, cfg in best_per_kind(results).iterrows():
        here = df[df.text_kind == kind]
        paper = here[(here.model == "cca") & (here.latent_dim == paper_dim) & (here.score == "correlation")]
        chosen = here[(here[keys] == cfg[keys]).all(axis=1)]
        for label, row in (("paper", paper), ("chosen on val", chosen)):
            if len(row):
                rows.append({"text_kind": kind, "configuration": label, **row.iloc[0][
                    keys + ["protocol", "medr", "medr_std", "r1", "r5", "r10", "r10_std"]].to_dict()})
    return pd.DataFrame(rows).set_index(["text_kind", "configuration"]).round(2)


def models_compared(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Each model at its own best on val (image→recipe medR, then R@10), with val and ``split`` medR and
    R@10 in both directions: the model family's ablation, every model chosen the same way, test choosing none."""
    best = ranked(main_rows(results, "val", "im2recipe")).groupby("model", sort=False).head(1)
    keys = ["text_kind", "shrinkage", "latent_dim", "score"]
    rows = []
    for _, cfg in best.iterrows():
        row = {"model": cfg.model, **cfg[keys].to_dict()}
        for s in dict.fromkeys(["val", split]):
            df = main_rows(results, s)
            for _, r in df[(df[CONFIG_COLUMNS] == cfg[CONFIG_COLUMNS]).all(axis=1)].iterrows():
                arrow = "image→recipe" if r.direction == "im2recipe" else "recipe→image"
                row.update({(f"{s} {r.protocol}", arrow, "medR"): r.medr, (f"{s} {r.protocol}", arrow, "R@10"): r.r10})
        rows.append(row)
    df = pd.DataFrame(rows).set_index(["model", *keys])
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df.round(1)  # rows in order of val medR


def recall_table(results: pd.DataFrame, split: str = "test", direction: str = "im2recipe") -> pd.DataFrame:
    """The paper's Tables 1–2 layout: rows text kind × feature source × latent dim (per model and score),
    columns protocol (1k, 10k, …) × (medR, R@1, R@5, R@10)."""
    df = results[(results.split == split) & (results.direction == direction)]
    table = df.pivot_table(index=["model", "score", "text_kind", "features", "latent_dim"], columns="protocol",
                           values=["medr", "r1", "r5", "r10"], aggfunc="first")
    return table.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False).round(1)


def recall_by_kind(results: pd.DataFrame, split: str = "test"):
    """R@1/5/10 of every text kind's configuration chosen on val (bars) and of the paper's (◆), both directions."""
    df = main_rows(results, split)
    best = best_per_kind(results)
    kinds = list(dict.fromkeys(results.text_kind))
    keys = ["model", "shrinkage", "latent_dim", "score"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True, layout="constrained")
    width, colours = 0.27, sns.color_palette("Blues", 4)[1:]
    for ax, (direction, name) in zip(axes, DIRECTIONS.items()):
        d = df[df.direction == direction]
        chosen = [_at(d, kind, best.loc[kind][keys]) for kind in kinds]
        paper = [_at(d, kind, pd.Series({**PAPER, "shrinkage": 0.0})) for kind in kinds]
        for j, k in enumerate((1, 5, 10)):
            x = np.arange(len(kinds)) + (j - 1) * width
            ax.bar(x, [r[f"r{k}"] for r in chosen], width, color=colours[j], label=f"R@{k}, chosen on val")
            ax.scatter(x, [r[f"r{k}"] for r in paper], marker="D", s=22, color="black", zorder=3,
                       label=PAPER_LABEL if any(r.notna().any() for r in paper) else PAPER_LABEL + " (not in this run)")
        ax.set_xticks(range(len(kinds)), kinds)
        ax.set_title(name)
    axes[0].set_ylabel(f"recall (%), {split}")
    legend = dict(zip(*reversed(axes[0].get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize=8)
    return fig


def _styles(scores: list[str]) -> dict:
    """A (line style, marker) per score: the base score's line, its hubness correction's marker (o: none)."""
    parts = [s.partition("+")[::2] for s in scores]
    line = {b: ls for b, ls in zip(dict.fromkeys(b for b, _ in parts), itertools.cycle(["-", "--", ":", "-."]))}
    marker = {h: m for h, m in zip(dict.fromkeys(h for _, h in sorted(parts, key=lambda p: p[1] != "")),
                                   itertools.cycle("os^Dv"))}
    return {s: (line[b], marker[h]) for s, (b, h) in zip(scores, parts)}


def medr_vs_dim(results: pd.DataFrame, split: str = "test"):
    """medR against latent dimension: a line per text kind and score, a panel per model and direction.

    A model with several shrinkages shows, per text kind and score, the shrinkage best on val;
    ★ marks the paper's configuration.
    """
    val = ranked(main_rows(results, "val", "im2recipe"))
    lines = ["model", "text_kind", "score"]
    df = main_rows(results, split).merge(val.drop_duplicates(lines)[lines + ["shrinkage"]])
    models, kinds, scores = (list(dict.fromkeys(results[c])) for c in lines)
    colour = dict(zip(kinds, sns.color_palette("tab10", len(kinds))))
    style = _styles(scores)
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.3 * len(models)), sharex=True, sharey=True,
                             layout="constrained", squeeze=False)
    for row, model in zip(axes, models):
        for ax, (direction, name) in zip(row, DIRECTIONS.items()):
            d = df[(df.model == model) & (df.direction == direction)]
            for (kind, score), g in d.groupby(["text_kind", "score"], sort=False):
                g = g.sort_values("latent_dim")
                ax.plot(g.latent_dim, g.medr, ls=style[score][0], marker=style[score][1], ms=4, color=colour[kind])
            if model == PAPER["model"]:
                paper = d[(d.latent_dim == PAPER["latent_dim"]) & (d.score == PAPER["score"])]
                ax.scatter(paper.latent_dim, paper.medr, marker="*", s=180, c=[colour[k] for k in paper.text_kind],
                           edgecolors="black", zorder=3)
            ax.set_title(f"{model}, {name}", fontsize=10)
    dims = sorted(df.latent_dim.unique())
    for ax in axes.flat:
        ax.set(xscale="log", yscale="log")
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    for ax in axes[:, 0]:
        ax.set_ylabel(f"median rank, {split}")
    for ax in axes[-1]:
        ax.set_xlabel("latent dimension")
    handles = ([Line2D([], [], color=colour[k], marker="o", label=k) for k in kinds]
               + [Line2D([], [], color="grey", ls=style[s][0], marker=style[s][1], label=f"score: {s}") for s in scores]
               + [Line2D([], [], ls="", marker="*", ms=12, mfc="white", mec="black", label=PAPER_LABEL)])
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="text kind", title_fontsize=8)
    return fig


def _at(df: pd.DataFrame, kind: str, config: pd.Series) -> pd.Series:
    """The row of ``kind`` at ``config`` (model, shrinkage, latent_dim, score), or NaNs if the run lacks it."""
    rows = df[(df.text_kind == kind) & (df[list(config.index)] == config).all(axis=1)]
    return rows.iloc[0] if len(rows) else pd.Series(np.nan, index=df.columns)


def recipe_groups(Z_txt: np.ndarray, titles: list[str], n_groups: int = 12, seed: int = 0) -> np.ndarray:
    """A group name per recipe that a cook can read: KMeans on the latent text vectors, each cluster named by
    two of the title words most over-represented in it (a pair no larger cluster took) and its size."""
    n_groups = max(1, min(n_groups, len(titles) // 8))
    labels = KMeans(n_groups, n_init=4, random_state=seed).fit_predict(Z_txt)
    words = [{w for w in re.findall(r"[a-z]+", t.lower()) if len(w) > 2 and w not in STOP_WORDS} for t in titles]
    overall, n = Counter(w for ws in words for w in ws), len(titles)
    names, taken = {}, set()
    for c, size in Counter(labels).most_common():
        here = Counter(w for i in np.flatnonzero(labels == c) for w in words[i])
        lift = {w: (m / size) * np.log((m / size) / (overall[w] / n)) for w, m in here.items()}
        best = sorted(lift, key=lambda w: (here[w] < 2, -lift[w], w))[:6]  # words of one title only last
        pair = next((p for p in itertools.combinations(best, 2) if p not in taken), (f"group {c + 1}",))
        taken.add(pair)
        names[c] = f"{' · '.join(pair)} ({size})"
    return np.array([names[c] for c in labels])


def tsne_2d(Z: np.ndarray, seed: int = 0, n_jobs: int = -1) -> np.ndarray:
    """2-D openTSNE embedding, seeded, PCA-initialised; gradients FFT-accelerated from 10k points
    (openTSNE's "auto": Barnes-Hut below, where it is ~20x faster than FFT's fixed grid cost).

    Beyond ``LARGE`` points (all of Recipe1M's test pairs: ~100k) the neighbours are searched on
    the first 50 principal components and the optimisation runs half of openTSNE's default
    iterations (125 exaggerated + 250), with its learning rate n / 12 that makes that enough:
    about a minute per text kind on two cores instead of three.
    """
    from openTSNE import TSNE
    Z = np.asarray(Z, np.float64)
    large = len(Z) > LARGE
    if large and Z.shape[1] > 50:
        Z = PCA(50, random_state=seed).fit_transform(Z)
    tsne = TSNE(n_components=2, perplexity=min(30.0, (len(Z) - 1) / 3), initialization="pca",
                negative_gradient_method="auto", n_jobs=n_jobs, random_state=seed,
                **({"early_exaggeration_iter": 125, "n_iter": 250} if large else {}))
    return np.asarray(tsne.fit(Z))


LARGE = 20_000


def tsne_layout(galleries: dict, seed: int = 0, max_pairs: int | None = None, n_jobs: int = -1) -> pd.DataFrame:
    """Every test pair's photo and recipe in 2-D, per text kind (one t-SNE each), grouped by the first gallery's
    recipe clusters so colours mean the same in every panel; ``max_pairs`` (seeded) caps the pairs."""
    first = next(iter(galleries.values()))
    n = len(first.index)
    pairs = np.arange(n) if not max_pairs or max_pairs >= n else \
        np.sort(np.random.default_rng(seed).choice(n, max_pairs, replace=False))
    info = first.index.iloc[pairs][["recipe_id", "title", "path"]].reset_index(drop=True)
    info["group"] = recipe_groups(first.recipes[pairs], list(info.title), seed=seed)
    frames = []
    for kind, g in progress_bar(galleries.items(), desc=f"t-SNE of {len(pairs):,} pairs", unit="kind",
                                disable=len(pairs) <= LARGE):
        xy = tsne_2d(np.vstack([g.photos[pairs], g.recipes[pairs]]), seed, n_jobs)
        frames.append(pd.concat([info] * 2, ignore_index=True).assign(
            kind=kind, space=g.label, modality=np.repeat(list(MODALITIES), len(pairs)),
            pair=np.tile(pairs, 2), x=xy[:, 0], y=xy[:, 1]))
    return pd.concat(frames, ignore_index=True)


def group_colours(layout: pd.DataFrame) -> dict[str, str]:
    """A colour per recipe group, largest group first (shared by the figure and the interactive page)."""
    groups = layout.drop_duplicates("pair").group.value_counts().index
    tab20 = sns.color_palette("tab20")
    palette = tab20[::2] + tab20[1::2]  # ten distinct hues first, then their light shades
    return {g: "#%02x%02x%02x" % tuple(int(255 * c) for c in palette[i]) for i, g in enumerate(groups)}


def tsne_panels(layout: pd.DataFrame):
    """One t-SNE panel per text kind, two per row: photos ● and recipes ×, coloured by recipe group."""
    kinds = list(dict.fromkeys(layout.kind))
    colours = group_colours(layout)
    cols = min(2, len(kinds))
    rows = -(-len(kinds) // cols)
    size = float(np.clip(20000 / len(layout[layout.kind == kinds[0]]), 3, 40))
    fig, axes = plt.subplots(rows, cols, figsize=(13, 13 / cols * rows * 0.95 + 1.2), layout="constrained",
                             squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        d = layout[layout.kind == kind]
        for modality, marker in MODALITIES.items():
            m = d[d.modality == modality]
            ax.scatter(m.x, m.y, c=m.group.map(colours), marker=marker, s=size, alpha=0.75,
                       linewidths=0.8 if marker == "x" else 0)
        ax.set_title(d.space.iloc[0], fontsize=11)
        ax.set(xticks=[], yticks=[])
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    handles = ([Line2D([], [], ls="", marker=m, color="dimgrey", label=name) for name, m in MODALITIES.items()]
               + [Patch(color=c, label=g) for g, c in colours.items()])
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9, frameon=False,
               title="recipe groups: clusters of the recipes' latent text vectors, named by their most distinctive "
                     "title words (recipes in the group)", title_fontsize=9)
    return fig


def retrieval_examples(galleries: dict, queries, k: int = 5):
    """Image → recipe: per query photo, each text kind's top-k recipes shown by their own photo and title
    (the true recipe framed green, ✓)."""
    kinds, first = list(galleries), next(iter(galleries.values()))
    fig = plt.figure(figsize=(1.5 * k + 2.1, (1.75 * len(kinds) + 0.3) * len(queries)), layout="constrained")
    for b, (sub, q) in enumerate(zip(np.atleast_1d(fig.subfigures(len(queries), 1)), queries)):
        sub.set_facecolor("0.94" if b % 2 else "white")
        left, right = sub.subfigures(1, 2, width_ratios=[1.4, k])
        ax = left.subplots()
        _photo(ax, first.index.path[q], _caption(first.index.title[q], 26))
        ax.set_title("query photo", fontsize=9, fontweight="bold")
        for row, kind in zip(right.subplots(len(kinds), k, squeeze=False), kinds):
            g = galleries[kind]
            for ax, i in zip(row, g.top(g.photos[q], k, "recipes")[0][0]):
                _photo(ax, g.index.path[i], _caption(g.index.title[i]) + (" ✓" if i == q else ""), true=i == q)
            row[0].set_ylabel(kind, fontsize=9, fontweight="bold")
    return fig


def photos_for_recipe(galleries: dict, queries, k: int = 5):
    """Recipe → image: per query recipe, each text kind's top-k photos (the true photo framed green)."""
    kinds, first = list(galleries), next(iter(galleries.values()))
    fig = plt.figure(figsize=(1.5 * k + 0.5, (1.5 * len(kinds) + 0.35) * len(queries)), layout="constrained")
    for b, (sub, q) in enumerate(zip(np.atleast_1d(fig.subfigures(len(queries), 1)), queries)):
        sub.set_facecolor("0.94" if b % 2 else "white")
        sub.suptitle(f"“{_shown(first.index.title[q])}” →", fontsize=10, fontweight="bold", x=0.02, ha="left",
                     **AS_WRITTEN)
        for row, kind in zip(sub.subplots(len(kinds), k, squeeze=False), kinds):
            g = galleries[kind]
            for ax, i in zip(row, g.top(g.recipes[q], k, "photos")[0][0]):
                _photo(ax, g.index.path[i], true=i == q)
            row[0].set_ylabel(kind, fontsize=9, fontweight="bold")
    return fig


def arithmetic_examples(galleries: dict, swaps, k: int = 4):
    """Vector arithmetic: a test photo − text(a) + text(b) → its nearest photos and recipes, per text kind.

    The query for (a, b) is the first test photo whose recipe title contains a; swaps without one
    are left out (None if none is left).
    """
    kinds, first = list(galleries), next(iter(galleries.values()))
    titles = [t.lower() for t in first.index.title]
    found = [(a, b, next(i for i, t in enumerate(titles) if a in t)) for a, b in swaps if any(a in t for t in titles)]
    if not found:
        return None
    words = list(dict.fromkeys(w for a, b, _ in found for w in (a, b)))
    vectors = {kind: dict(zip(words, g.embed_texts(words))) for kind, g in galleries.items()}  # one encoder pass each
    fig = plt.figure(figsize=(1.5 * k + 4.2, (1.55 * len(kinds) + 0.3) * len(found)), layout="constrained")
    for n, (sub, (a, b, q)) in enumerate(zip(np.atleast_1d(fig.subfigures(len(found), 1)), found)):
        sub.set_facecolor("0.94" if n % 2 else "white")
        left, right = sub.subfigures(1, 2, width_ratios=[1.4, k + 2])
        ax = left.subplots()
        _photo(ax, first.index.path[q], _caption(first.index.title[q], 26))
        ax.set_title(f"− “{a}”\n+ “{b}”", fontsize=10, fontweight="bold", **AS_WRITTEN)
        axes = right.subplots(len(kinds), k + 1, squeeze=False, width_ratios=[1] * k + [2])
        for row, kind in zip(axes, kinds):
            g = galleries[kind]
            z = g.photos[q] - vectors[kind][a] + vectors[kind][b]
            near = [i for i in g.top(z, k + 1, "photos")[0][0] if i != q][:k]
            for ax, i in zip(row, near):
                _photo(ax, g.index.path[i], _caption(g.index.title[i]))
            recipes = "\n".join(textwrap.shorten(_shown(g.index.title[i]), 34, placeholder="…")
                                 for i in g.top(z, 3, "recipes")[0][0])
            row[-1].axis("off")
            row[-1].text(0, 0.5, "nearest recipes:\n" + recipes, fontsize=7.5, va="center", **AS_WRITTEN)
            row[0].set_ylabel(kind, fontsize=9, fontweight="bold")
    return fig


AS_WRITTEN = {"parse_math": False}  # text from the data: "$5 Pasta for $2 each" is not maths, "($$)" no error


def _caption(title: str, width: int = 20) -> str:
    return textwrap.fill(_shown(title), width, max_lines=2, placeholder="…")


def _shown(text: str) -> str:
    """Text as a figure draws it: C1 control characters (Windows-1252 punctuation read as Latin-1 in
    scraped recipes, e.g. \x96 for an en dash; no font has a glyph for them) as what they stand for."""
    return re.sub("[\x80-\x9f]", lambda m: m.group().encode("latin-1").decode("cp1252", "ignore"), text)


def _photo(ax, path: str, caption: str = "", true: bool = False) -> None:
    """A photo as a square thumbnail (centre crop, as the encoders see it: no gaps between grid cells),
    captioned below; ``true`` frames it green. A photo that cannot be read (given features need no
    photo files) is a grey square saying why."""
    try:
        ax.imshow(ImageOps.fit(load_image(path), (192, 192)))
    except ValueError as e:
        ax.set_facecolor("0.88")
        ax.text(0.5, 0.5, f"no photo\n({e})", ha="center", va="center", fontsize=7, color="0.35",
                transform=ax.transAxes, **AS_WRITTEN)
    ax.set(xticks=[], yticks=[])
    ax.set_xlabel(caption, fontsize=7, color="darkgreen" if true else "black", **AS_WRITTEN)
    for spine in ax.spines.values():
        spine.set(visible=true, color="limegreen", linewidth=4)
