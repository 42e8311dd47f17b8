"""Figures and tables of the results: the paper's configuration against the one chosen on val, recall by text
kind, medR against latent dimension, and each model at its best.

Every figure shows every text kind of the run, each in its configuration chosen on val, beside
the paper's (``tables.PAPER``).
"""
from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from cmr_utils.evaluate.results import CONFIG_COLUMNS, best_per_kind, main_rows, ranked
from cmr_utils.report.tables import DIRECTIONS, PAPER

PAPER_LABEL = f"paper: {PAPER['model']}, dim {PAPER['latent_dim']}, {PAPER['score']}"


def paper_vs_chosen(results: pd.DataFrame, split: str = "test", paper_dim: int = PAPER["latent_dim"]) -> pd.DataFrame:
    """Per text kind: the paper's configuration (plain CCA, dim 50, correlation) beside the one chosen on val."""
    df = main_rows(results, split, "im2recipe")
    keys = ["model", "shrinkage", "latent_dim", "score"]
    rows = []
    for kind, cfg in best_per_kind(results).iterrows():
        here = df[df.text_kind == kind]
        paper = here[(here.model == PAPER["model"]) & (here.latent_dim == paper_dim) & (here.score == PAPER["score"])]
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
        ax.set_xticks(range(len(kinds)), kinds, rotation=90 if len(kinds) > 4 else 0)  # six names do not fit flat
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
