"""The paper's Tables 1 and 2 (test recall at 10k and 1k bags), and the HTML tables the report shares with them.

Rows are text kind × feature source × the latent dimensions the paper reports (50, 768) plus
the chosen one; columns are medR and R@1/5/10 for both directions, each cell the mean ± std
over bags. The paper's model (plain CCA, correlation score) and the chosen configuration are
separate blocks, so a reader sees both. Every row is of a model fitted on train, as in
``results.main_rows`` (the chosen one's train+val refit is left out). Tables are plain HTML from
the templates folder with their own CSS: whole, never truncated, the same in the index and in
a notebook.
"""
from __future__ import annotations

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from cmr_utils.evaluate import results as R

METRICS = {"medr": "medR", "r1": "R@1", "r5": "R@5", "r10": "R@10"}
DIRECTIONS = {"im2recipe": "image → recipe", "recipe2im": "recipe → image"}
PAPER = {"model": "cca", "latent_dim": 50, "score": "correlation"}  # the paper's configuration, in tables and figures
PAPER_DIMS = (50, 768)  # the latent dimensions its Tables 1 and 2 report
PAPER_PROTOCOLS = {"10k": "Table 1", "1k": "Table 2"}
LEAD = {"text_kind": "text kind", "features": "features", "point": "point", "latent_dim": "dim"}

_ENV = Environment(loader=PackageLoader("cmr_utils.report"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    """A template from ``cmr_utils/report/templates`` (autoescaped: pass trusted HTML through ``|safe``)."""
    return _ENV.get_template(template).render(**context)


def cell(mean: float, std: float, n_bags: int = 2) -> str:
    """'mean ± std' over bags; one ranking of the whole split (one bag) has no spread to show."""
    return f"{mean:.1f}" if n_bags <= 1 else f"{mean:.1f} ± {std:.1f}"


def keys(results: pd.DataFrame) -> list[str]:
    """The columns that name one configuration: a grid's combined results add the point."""
    return R.CONFIG_COLUMNS + (["point"] if "point" in results else [])


def chosen_config(results: pd.DataFrame) -> pd.Series:
    """The chosen configuration; in a grid, that of the point whose choice is best on val (``results.chosen``
    among the rows marked chosen), with its point."""
    return results.loc[R.chosen(results[results.chosen]).name, keys(results)]


def paper_config(results: pd.DataFrame, chosen: pd.Series) -> pd.Series | None:
    """The paper's configuration (cca, dim 50, correlation) with the chosen text kind (and point)
    where it exists, else its best on val; None when the results lack it."""
    rows = R.main_rows(results, "val", "im2recipe")
    rows = rows[(rows.model == PAPER["model"]) & (rows.score == PAPER["score"]) & (rows.latent_dim == PAPER["latent_dim"])]
    for col in ("text_kind", "point"):
        if col in rows and (rows[col] == chosen[col]).any():
            rows = rows[rows[col] == chosen[col]]
    return None if rows.empty else R.ranked(rows).iloc[0][keys(results)]


def cells(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """{(direction, metric): 'mean ± std'} of one configuration's rows (one per direction)."""
    rows = rows.set_index("direction")
    return {(d, m): cell(rows.at[d, m], rows.at[d, f"{m}_std"], rows.at[d, "n_bags"])
            for d in DIRECTIONS for m in METRICS}


def rows_of(results: pd.DataFrame, config: pd.Series, split: str = "test", protocol: str | None = None,
            fit_on: str = "train") -> pd.DataFrame:
    """The rows of one configuration on ``split`` at ``protocol`` (the split's main one by default)."""
    rows = at(results, split, protocol, fit_on)
    return rows[(rows[config.index] == config).all(axis=1)]


def at(results: pd.DataFrame, split: str, protocol: str | None = None, fit_on: str = "train") -> pd.DataFrame:
    """The rows of ``split`` at ``protocol`` (else the split's main one) of models fitted on ``fit_on``:
    tables compare models fitted on the same pairs."""
    if protocol is None:
        return R.main_rows(results, split, fit_on=fit_on)
    return results[(results.split == split) & (results.protocol == protocol) & (results.fit_on == fit_on)]


def protocol_note(results: pd.DataFrame, split: str = "test", protocol: str | None = None) -> str:
    """What the numbers of ``split`` at ``protocol`` average over."""
    r = at(results, split, protocol).iloc[0]
    if r.n_bags <= 1:
        return f"{split} split, protocol '{r.protocol}': all {r.n_pairs} pairs ranked once (no spread over bags)"
    return (f"{split} split, protocol '{r.protocol}': mean ± std over {r.n_bags} bags of {r.bag_size} pairs "
            f"drawn from {r.n_pairs}")


def protocols(results: pd.DataFrame, split: str = "test") -> list[str]:
    """The paper's protocols present on ``split`` (10k, then 1k), else the split's main protocol."""
    present = set(results.loc[results.split == split, "protocol"])
    return [p for p in PAPER_PROTOCOLS if p in present] or [R.main_rows(results, split).protocol.iloc[0]]


def paper_rows(results: pd.DataFrame, protocol: str, split: str = "test") -> pd.DataFrame:
    """One table's rows: block, text kind, features (and point where the two leave it ambiguous),
    latent dim, ``chosen``, and a 'mean ± std' cell per (direction, metric) column."""
    chosen = chosen_config(results)
    rows = at(results, split, protocol)
    rows = rows.assign(text_kind=pd.Categorical(rows.text_kind, list(dict.fromkeys(results.text_kind))))
    lead = ["text_kind", "features"]
    if "point" in rows and rows.groupby(lead, observed=True).point.nunique().max() > 1:
        lead.append("point")
    out = []
    for block, where in _blocks(results, chosen):
        sel = rows[(rows[list(where)] == pd.Series(where)).all(axis=1)]
        sel = sel[sel.latent_dim.isin({*PAPER_DIMS, int(chosen.latent_dim)})]
        for head, g in sel.groupby(lead + ["latent_dim"], observed=True):
            out.append({"block": block, **dict(zip(lead + ["latent_dim"], head)),
                        "chosen": bool((g.iloc[0][chosen.index] == chosen).all()), **cells(g)})
    return pd.DataFrame(out)


def paper_tables(results: pd.DataFrame, split: str = "test") -> list[tuple[str, str]]:
    """[(title, HTML)]: Table 1 (10k) and Table 2 (1k) where the split has those bags, else one
    table at the split's main protocol, its caption saying so."""
    out = []
    shown = protocols(results, split)
    for protocol, table in PAPER_PROTOCOLS.items():
        if protocol not in shown and set(shown) & set(PAPER_PROTOCOLS):  # else the caption says it
            out.append((f"{table} · {split}, {protocol}: not in these results",
                        f"<p>{absent_protocol(results, protocol, split)}</p>"))
    for protocol in shown:
        caption = protocol_note(results, split, protocol) + absent_dims(results)
        if protocol not in PAPER_PROTOCOLS:
            caption = f"No 1k or 10k bags on the {split} split in these results; shown instead: {caption}"
        rows = paper_rows(results, protocol, split)
        out.append((f"{PAPER_PROTOCOLS.get(protocol, 'Paper table')} · {split}, {protocol}",
                    html_table(rows, {k: v for k, v in LEAD.items() if k in rows}, caption,
                               group="block", span=["text_kind", "features"])))
    return out


def whole(df: pd.DataFrame, page: int = 25):
    """A table for a notebook page, never cut to 'rows × columns': as it is when short, else every row in an
    offline DataTable that pages, searches and sorts."""
    from IPython.display import HTML
    if len(df) <= page:
        return HTML(df.to_html())
    import itables
    from itables.javascript import generate_init_offline_itables_html
    return HTML(generate_init_offline_itables_html(itables.options.dt_bundle) + itables.to_html_datatable(
        df.reset_index(), connected=False, showIndex=False, maxBytes=0, pageLength=page,
        lengthMenu=[page, 100, {"label": "All", "value": -1}], classes="display compact cell-border",
        display_logo_when_loading=False))


def absent_protocol(results: pd.DataFrame, protocol: str, split: str = "test") -> str:
    """Why the paper's table at ``protocol`` (1k or 10k bags) is not there."""
    size = int(protocol[:-1]) * 1000
    n = int(results.loc[results.split == split, "n_pairs"].max())
    if n < size:
        return (f"No {protocol} bags: the {split} split has {n:,} query pairs, fewer than a bag of {size:,} "
                "(the paper's Recipe1M test split has 51k).")
    return f"No {protocol} bags: {size} is not among this run's bag_sizes."


def absent_dims(results: pd.DataFrame) -> str:
    """A caption's note on the paper's latent dims that no row has, and why."""
    missing = [d for d in PAPER_DIMS if d not in set(results.latent_dim)]
    capped = results[results.n_components < results.latent_dim]
    rank = int(capped.n_components.max()) if len(capped) else None
    why = [f"above the rank of the features ({rank} components at most)" if rank and d > rank
           else f"not among the latent_dims of this run ({', '.join(map(str, sorted(set(results.latent_dim))))})"
           for d in missing]
    return "".join(f"; no rows at dim {d}: {w}" for d, w in zip(missing, why))


def html_table(rows: pd.DataFrame, lead: dict[str, str], caption: str = "", group: str | None = None,
               span: list[str] = ()) -> str:
    """Columns ``lead`` ({column: header}), then medR and R@1/5/10 per direction.

    Rows of one ``group`` sit under a header row; ``span`` columns merge repeated values (each
    within the ones before it); a group's best value per column as shown is bold (lowest medR,
    highest recall); rows whose ``chosen`` is true are highlighted.
    """
    groups = []
    for name, g in (rows.groupby(group, sort=False) if group else [(None, rows)]):
        g = g.reset_index(drop=True)
        spans = {col: _spans(g[span[:k + 1]]) for k, col in enumerate(span)}
        shown = {(d, m): g[(d, m)].str.split(" ").str[0].astype(float) for d in DIRECTIONS for m in METRICS}
        best = {c: v.min() if c[1] == "medr" else v.max() for c, v in shown.items()}
        lines = [{"chosen": bool(r.get("chosen", False)),
                  "lead": [{"text": _fmt(r[c]), "rowspan": spans[c][i] if c in spans else 1} for c in lead],
                  "metrics": [{"text": r[c], "best": shown[c][i] == best[c], "first": c[1] == "medr"}
                              for c in shown]}
                 for i, r in g.iterrows()]
        groups.append({"name": name, "rows": lines})
    return render("metrics_table.html.j2", lead=list(lead.values()), directions=DIRECTIONS, metrics=METRICS,
                  groups=groups, caption=caption)


def _spans(df: pd.DataFrame) -> list[int]:
    """Rowspan of each row's cell: the length of its run of equal rows, 0 where merged into the one above."""
    run = df.astype(str).agg("|".join, axis=1)
    run = (run != run.shift()).cumsum()
    return [n if first else 0 for n, first in zip(run.map(run.value_counts()), run != run.shift())]


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _blocks(results: pd.DataFrame, chosen: pd.Series) -> list[tuple[str, dict]]:
    """[(label, {column: value})]: the paper's model and score where present, and the chosen ones."""
    mine = {"model": chosen.model, "shrinkage": chosen.shrinkage, "score": chosen.score}
    if chosen.model == PAPER["model"] and chosen.score == PAPER["score"]:
        return [("Paper's model and score (plain CCA, correlation), also the chosen one", mine)]
    shrink = "" if chosen.model == "cca" else f", shrinkage {chosen.shrinkage:g}"
    has_paper = ((results.model == PAPER["model"]) & (results.score == PAPER["score"])).any()
    paper = {"model": PAPER["model"], "score": PAPER["score"]}  # at every dimension the tables show
    return ([("Paper: plain CCA, correlation score", paper)] if has_paper else []) \
        + [(f"Chosen: {chosen.model}{shrink}, {chosen.score} score", mine)]
