"""Figures and tables for the report: recall tables, medR against latent dimension, t-SNE, examples."""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.manifold import TSNE

from .data import Recipe1M
from .encoders import load_image
from .retrieval import normalize

# dish group: title words that name it; earlier groups win ("Shrimp Soup" is a soup)
DISH_GROUPS = {
    "soup": ("soup", "bisque", "chowder", "broth"), "stew/curry": ("stew", "curry", "chili"),
    "salad": ("salad", "slaw"), "cake": ("cake", "torte", "cupcake", "cheesecake"),
    "pie/tart": ("pie", "tart", "galette"), "pizza": ("pizza", "flatbread"),
    "pasta": ("pasta", "linguine", "spaghetti", "noodles", "lasagna"), "drink": ("smoothie", "shake", "cocktail"),
    "skewers": ("skewers", "kebabs", "kebab"), "bread": ("bread", "muffin", "muffins", "biscuits", "scones"),
    "cookie": ("cookie", "cookies", "brownies", "bars"), "sandwich": ("sandwich", "burger", "tacos"),
    "sauce": ("sauce", "dressing", "salsa", "dip"), "chicken": ("chicken",), "beef/pork": ("beef", "pork", "lamb"),
    "fish": ("fish", "salmon", "shrimp", "tuna", "cod"),
}


def dish_keyword(title: str) -> str:
    """A coarse dish group from a title (first matching group, else 'other'), for colouring plots."""
    words = set(re.findall(r"[a-z]+", title.lower()))
    return next((group for group, names in DISH_GROUPS.items() if words & set(names)), "other")


def best_per_kind(results: pd.DataFrame, direction: str = "im2recipe") -> pd.DataFrame:
    """For each text kind, the configuration with the lowest val medR (then highest R@10)."""
    val = results[(results.split == "val") & (results.direction == direction)]
    val = val[val.protocol == val.protocol.iloc[0]]
    return (val.sort_values(["medr", "r10"], ascending=[True, False])
            .groupby("text_kind", sort=False).head(1).set_index("text_kind"))


def paper_vs_chosen(results: pd.DataFrame, split: str = "test", paper_dim: int = 50) -> pd.DataFrame:
    """Per text kind: the paper's configuration (plain CCA, dim 50, correlation) beside the one chosen on val."""
    df = results[(results.split == split) & (results.direction == "im2recipe")]
    df = df[df.protocol == df.protocol.iloc[0]]
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


def recall_table(results: pd.DataFrame, split: str = "test", direction: str = "im2recipe") -> pd.DataFrame:
    """The paper's Tables 1–2 layout: rows text kind × feature source × latent dim (per model and score),
    columns protocol (1k, 10k, …) × (medR, R@1, R@5, R@10)."""
    df = results[(results.split == split) & (results.direction == direction)]
    table = df.pivot_table(index=["model", "score", "text_kind", "features", "latent_dim"], columns="protocol",
                           values=["medr", "r1", "r5", "r10"], aggfunc="first")
    return table.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False).round(1)


def medr_vs_dim(results: pd.DataFrame, split: str = "test"):
    """medR against latent dimension, one line per text kind, one panel per direction and model."""
    df = results[results.split == split]
    df = df[df.protocol == df.protocol.iloc[0]]
    g = sns.relplot(data=df, x="latent_dim", y="medr", hue="text_kind", style="score", col="direction",
                    row="model", kind="line", marker="o", height=3.2, aspect=1.3)
    g.set(xscale="log", yscale="log")
    g.set_axis_labels("latent dimension", "median rank (lower is better)")
    return g.figure


def recall_by_kind(results: pd.DataFrame, split: str = "test"):
    """R@1/5/10 of each text kind's best configuration (chosen on val), both directions."""
    keys = ["model", "latent_dim", "score", "shrinkage"]
    df = results[results.split == split]
    df = df[df.protocol == df.protocol.iloc[0]]
    rows = []
    for kind, cfg in best_per_kind(results).iterrows():
        sel = df[(df.text_kind == kind) & (df[keys] == cfg[keys]).all(axis=1)]
        rows += [{"text_kind": kind, "direction": r.direction, "K": f"R@{k}", "recall": r[f"r{k}"]}
                 for _, r in sel.iterrows() for k in (1, 5, 10)]
    g = sns.catplot(data=pd.DataFrame(rows), x="text_kind", y="recall", hue="K", col="direction", kind="bar",
                    height=3.2, aspect=1.3)
    g.set_axis_labels("text kind", "recall (%)")
    return g.figure


def tsne(Z_img: np.ndarray, Z_txt: np.ndarray, labels: list[str], score: str, corrs, seed: int = 0, ax=None):
    """Images and texts of the same pairs embedded together by t-SNE, coloured by ``labels``."""
    Z = np.vstack([normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs)])
    xy = TSNE(n_components=2, perplexity=min(30, max(5, len(Z) // 10)), init="pca", random_state=seed).fit_transform(Z)
    n = len(Z_img)
    ax = ax or plt.gca()
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "group": list(labels) * 2,
                          "modality": ["image"] * n + ["text"] * n})
    top = frame.group.value_counts().index[:10]
    frame.loc[~frame.group.isin(top), "group"] = "other"
    sns.scatterplot(data=frame, x="x", y="y", hue="group", style="modality", s=14, alpha=0.7, ax=ax)
    ax.set(xticks=[], yticks=[], xlabel="", ylabel="")
    ax.legend(fontsize=7, markerscale=0.8, loc="best")
    return ax


def retrieval_examples(ds: Recipe1M, index: pd.DataFrame, Z_img, Z_txt, score, corrs, queries, k: int = 5):
    """Figure: each query photo beside the titles of its top-k recipes (✓ marks the true one)."""
    Qi, Gt = normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs)
    fig, axes = plt.subplots(len(queries), 2, figsize=(9, 2.2 * len(queries)),
                             gridspec_kw={"width_ratios": [1, 3]}, squeeze=False)
    for row, q in enumerate(queries):
        rid = index.recipe_id[q]
        _show(axes[row, 0], ds, index, q)
        axes[row, 0].axis("off")
        top = np.argsort(-(Gt @ Qi[q]))[:k]
        lines = [f"{i + 1}. {ds.recipes[index.recipe_id[t]].title[:70]}{'  ✓' if t == q else ''}"
                 for i, t in enumerate(top)]
        axes[row, 1].text(0, 0.5, f"true: {ds.recipes[rid].title[:70]}\n" + "\n".join(lines), va="center",
                          fontsize=9, family="monospace")
        axes[row, 1].axis("off")
    fig.tight_layout()
    return fig


def arithmetic_examples(ds: Recipe1M, index: pd.DataFrame, Z_img, Z_txt, swaps, embed_text, score, corrs,
                        k: int = 4):
    """Vector arithmetic in the shared space: photo − text(a) + text(b) → nearest photos and recipes.

    ``swaps`` is a list of (a, b) words; the query is the first test photo whose recipe title
    contains a. ``embed_text`` maps a list of strings to latent text vectors.
    """
    titles = [ds.recipes[r].title.lower() for r in index.recipe_id]
    swaps = [(a, b) for a, b in swaps if any(a in t for t in titles)]
    if not swaps:
        return None
    Qi, Gt = normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs)
    fig, axes = plt.subplots(len(swaps), k + 1, figsize=(2.4 * (k + 1), 2.9 * len(swaps)), squeeze=False)
    for row, (a, b) in enumerate(swaps):
        q = next(i for i, t in enumerate(titles) if a in t)
        Ta, Tb = normalize(embed_text([a, b]), score, corrs)
        z = Qi[q] - Ta + Tb
        nearest_img = [i for i in np.argsort(-(Qi @ z)) if i != q][:k]
        nearest_txt = np.argsort(-(Gt @ z))[:3]
        _show(axes[row, 0], ds, index, q)
        axes[row, 0].set_title(f"{_short(ds, index, q)}\n− “{a}” + “{b}”", fontsize=8)
        for col, i in enumerate(nearest_img, 1):
            _show(axes[row, col], ds, index, i)
            axes[row, col].set_title(_short(ds, index, i), fontsize=8)
        axes[row, k].text(0.0, -0.12, "recipes: " + "; ".join(_short(ds, index, i, 30) for i in nearest_txt),
                          transform=axes[row, k].transAxes, ha="right", fontsize=7)
    fig.tight_layout()
    return fig


def photos_for_recipe(ds: Recipe1M, index: pd.DataFrame, Z_img, Z_txt, score, corrs, queries, k: int = 5):
    """Recipe→image retrieval: each query recipe's title beside its top-k photos (the true one framed)."""
    Qt, Gi = normalize(Z_txt, score, corrs), normalize(Z_img, score, corrs)
    fig, axes = plt.subplots(len(queries), k, figsize=(2.2 * k, 2.5 * len(queries)), squeeze=False)
    for row, q in enumerate(queries):
        for col, i in enumerate(np.argsort(-(Gi @ Qt[q]))[:k]):
            _show(axes[row, col], ds, index, i)
            if i == q:
                for spine in axes[row, col].spines.values():
                    spine.set(visible=True, color="green", linewidth=4)
        axes[row, 0].set_title(f"“{_short(ds, index, q, 60)}” →", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def _short(ds, index, i, n: int = 24) -> str:
    t = ds.recipes[index.recipe_id[i]].title
    return t if len(t) <= n else t[: n - 1] + "…"


def _show(ax, ds, index, i):
    ax.imshow(load_image(ds.image_path(ds.recipes[index.recipe_id[i]].partition, index.image_id[i])))
    ax.set_xticks([])
    ax.set_yticks([])
