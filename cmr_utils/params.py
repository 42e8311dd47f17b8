"""Parameters: read each notebook's ``parameters`` cell and check a run's parameters against them.

papermill only warns about a parameter no notebook declares; here a misspelt key, a value of
the wrong type or out of range stops the run before anything executes, naming the key, the file
and the closest valid name or the accepted values.
"""
from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

import yaml

from .data import TEXT_KINDS
from .encoders import IMAGE_ENCODERS, IMAGE_NORMALIZATIONS, IMAGE_VIEWS
from .models import MODELS
from .retrieval import SCORES

PATH_KEYS = ("data_dir", "image_weights", "cache_dir", "given_dir")


class ParameterError(ValueError):
    pass


def _one_of(*allowed):
    return lambda v: v in allowed, "one of " + ", ".join(map(repr, allowed))


def _int_at_least(low: int, note: str = ""):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer ≥ {low}{note}"


def _each(rule):
    ok, accepted = rule
    return (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(map(ok, v)),
            f"a non-empty list, each {accepted}")


def _text(what: str):
    """A path or name: an unquoted no, 123 or null is read by YAML as another type and must not slip through."""
    return (lambda v: isinstance(v, str) and v != "",
            f"{what}: a non-empty string (quote a value YAML reads otherwise, e.g. 'no' or '123')")

# What each parameter accepts beyond its notebook default's type; a None default also allows None.
RULES = {
    "text_kinds": _each(_one_of(*TEXT_KINDS, "concat")),
    "models": _each(_one_of(*MODELS)),
    "scores": _each(_one_of(*SCORES)),
    "latent_dims": _each(_int_at_least(1)),
    "shrinkage": _each((lambda v: 0 <= v <= 1, "a number in [0, 1]")),
    "bag_sizes": _each(_int_at_least(0, " (0: the whole split)")),
    "n_bags": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "num_workers": _int_at_least(0),
    "pca": _int_at_least(1),
    "image_encoder": _one_of(*IMAGE_ENCODERS),
    "image_views": _one_of(*IMAGE_VIEWS),
    "image_normalization": _one_of(*IMAGE_NORMALIZATIONS),
    "text_layer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer (-1: the last hidden layer)"),
    "text_pooling": _one_of("mean", "cls"),
    "ingredients": _one_of("raw", "detected"),
    "text_encoder": _text("a model name or folder"),
    "cluster": (lambda v: isinstance(v, str) and bool(re.fullmatch(r"local:[1-9]\d*|tcp://.+|tls://.+", v)),
                "'local:N' (N ≥ 1 worker processes) or a scheduler address 'tcp://host:port'"),
    "synthetic_scale": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                        "a number > 0 (1: Recipe1M's size)"),
    **dict.fromkeys(PATH_KEYS, _text("a path")),
}


def notebook_parameters(path: str | Path) -> dict:
    """{name: default} of the cell tagged ``parameters`` in a jupytext percent-format notebook."""
    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines)
                     if line.startswith("# %%") and "parameters" in line and "tags" in line)
    except StopIteration:
        raise ParameterError(f"{path} has no cell tagged 'parameters'") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    params = {}
    for node in ast.parse("\n".join(lines[start + 1:end])).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            params[target.id] = ast.literal_eval(node.value)
    return params


def load(path: str | Path, overrides: list[str] = ()) -> dict:
    """Parameters from a YAML mapping, then ``key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    params = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(params, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(f"--set {item!r}: expected key=value")
        params[name.strip()] = _yaml(value, f"--set {item!r}")
    return params


def _yaml(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParameterError(f"{source}{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None


def check(params: dict, declared: dict[str, dict], source: str) -> None:
    """Raise ParameterError for a key no notebook declares, a value whose type differs from the default
    or one that breaks its rule in ``RULES``.

    ``declared`` maps notebook name to its {name: default}. A default of None accepts None and,
    unless a rule says otherwise, any value; an int is accepted where a float is expected.
    """
    known = {}
    for nb, defaults in declared.items():
        for name, default in defaults.items():
            known.setdefault(name, (nb, default))
    for name, value in params.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid names: {', '.join(sorted(known))}"
            raise ParameterError(f"{source}: unknown parameter {name!r}{hint}")
        nb, default = known[name]
        if not _same_type(value, default):
            raise ParameterError(
                f"{source}: parameter {name!r} should be {type(default).__name__} like the default "
                f"{default!r} in {nb}, got {type(value).__name__} {value!r}")
        ok, accepted = RULES.get(name, (None, None))
        if ok and value is not None and not ok(value):  # None passed the type check only where the default is None
            raise ParameterError(f"{source}: parameter {name!r} must be {accepted}, got {value!r}")


def _same_type(value, default) -> bool:
    if default is None or value is None:
        return default is None
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and all(
            _same_type(v, default[0]) for v in value) if default else isinstance(value, (list, tuple))
    return isinstance(value, type(default))
