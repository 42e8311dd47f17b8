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
    """[(label, parameters)] of every grid point: the cartesian product of the ``grid`` axes over the rest.

    Every point is checked against the notebooks' parameters before anything runs; without a
    ``grid`` there is one point labelled ''.
    """
    params = dict(params)
    grid = params.pop("grid", None) or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise P.ParameterError(f"{source}: 'grid' must map parameter names to non-empty lists of values")
    notebooks = declared()
    axes = list(grid)
    points = []
    for values in itertools.product(*(grid[a] for a in axes)):
        point = {**params, **dict(zip(axes, values))}
        P.check(point, notebooks, source)
        label = "_".join(f"{a}-{slug(v)}" for a, v in zip(axes, values))
        points.append((label, point))
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
