"""Grid expansion: a ``grid:`` mapping (parameter -> list of values) into checked points, each with its folder name."""
from __future__ import annotations

import contextlib
import itertools
import json
import re

import yaml

from . import params as P
from .io import key
from .pipeline import declared


def expand(params: dict, source: str) -> list[tuple[str, dict]]:
    """[(label, parameters)] of every grid point over the rest of ``params``.

    ``grid`` is a mapping (parameter -> list of values: their cartesian product) or a list of
    mappings, each one point's changes (an ablation: one lever at a time; ``{}`` is the rest as it
    is, labelled ``base``). Every point is checked against the notebooks' parameters before
    anything runs; without a ``grid`` there is one point labelled ''.
    """
    params = dict(params)
    grid = params.pop("grid", None) or {}
    if isinstance(grid, dict) and all(isinstance(v, list) and v for v in grid.values()):
        changes = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    elif isinstance(grid, list) and grid and all(isinstance(p, dict) for p in grid):
        changes = grid
    else:
        raise P.ParameterError(f"{source}: 'grid' must map parameter names to non-empty lists of values, "
                               "or be a non-empty list of mappings (one per point)")
    notebooks = declared()
    points = []
    for change in changes:
        point = {**params, **change}
        P.check(point, notebooks, source)
        points.append(("_".join(f"{a}-{slug(v)}" for a, v in change.items()) or ("base" if grid else ""), point))
    labels = [label for label, _ in points]
    if len(set(labels)) < len(labels):
        raise P.ParameterError(f"{source}: 'grid' lists a point twice: {sorted({x for x in labels if labels.count(x) > 1})}")
    return points


def slug(value) -> str:
    """A folder name for a grid value: its text where that reads back (as YAML, like ``--set``) as exactly
    the value, else the text tidied plus a short hash of the value, so distinct values never share a folder."""
    text = value if isinstance(value, str) else json.dumps(value)
    tidy = re.sub(r"[^A-Za-z0-9.-]+", "-", text)
    with contextlib.suppress(yaml.YAMLError):
        back = yaml.safe_load(tidy)
        if type(back) is type(value) and back == value:
            return tidy
    return "-".join(filter(None, [tidy.strip("-"), key(value)[:8]]))
