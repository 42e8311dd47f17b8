"""Grid expansion: a ``grid:`` mapping (parameter -> list of values, or point name -> its changes) into checked
points, each with its folder name."""
from __future__ import annotations

import contextlib
import itertools
import json
import re

import yaml

from cmr_utils.runner import params as P
from cmr_utils.io import key
from cmr_utils.runner.notebooks import declared


def expand(params: dict, source: str) -> list[tuple[str, dict]]:
    """[(label, parameters)] of every grid point over the rest of ``params``.

    ``grid`` maps parameters to lists of values (their cartesian product, each point labelled by
    its values), or names points, each a mapping of the parameters it changes (an ablation: one
    lever at a time; ``{}`` is the rest as it is); the name is the point's folder. Every point is
    checked against the notebooks' parameters before anything runs; without a ``grid`` there is one
    point labelled ''.
    """
    origin = getattr(params, "origin", {})  # names set by --set (``params.load``)
    params = dict(params)
    grid = params.pop("grid", None) or {}
    if not isinstance(grid, dict):
        raise P.ParameterError(f"{source}: 'grid' must be a mapping: {GRID_FORMS}")
    if grid and all(v is None or isinstance(v, dict) for v in grid.values()):
        bad = [name for name in grid if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name))]
        if bad:
            raise P.ParameterError(f"{source}: grid point names {bad} are not folder names: letters, digits, _ and - "
                                   "(quote one that YAML reads as a number or a boolean)")
        changes = {name: change or {} for name, change in grid.items()}
    elif all(isinstance(v, list) and v for v in grid.values()):
        changes = {"_".join(f"{a}-{slug(v)}" for a, v in zip(grid, values)): dict(zip(grid, values))
                   for values in itertools.product(*grid.values())}
    else:
        raise P.ParameterError(f"{source}: 'grid' must be {GRID_FORMS}")
    notebooks = declared()
    points = []
    for label, change in changes.items():
        point = {**params, **change}
        P.check(point, notebooks, f"{source}, grid point {label!r}" if label else source,
                {k: f"{v}, grid point {label!r}" if label else v for k, v in origin.items() if k not in change})
        points.append((label, point))
    return points


GRID_FORMS = ("parameter names mapped to non-empty lists of values (their cartesian product), "
              "or point names mapped to the parameters each point changes")


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
