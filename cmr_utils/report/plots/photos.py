"""Retrieval shown with photos: a query's top hits per text kind as thumbnail grids (image → recipe,
recipe → image, and vector arithmetic), from ``search.Gallery`` objects (one per kind, same test
pairs in the same order) and pair indices into them."""
from __future__ import annotations

import re
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from PIL import ImageOps

from cmr_utils.data.photos import load_image


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
