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

from cmr_utils.data.recipe1m import TEXT_KINDS
from cmr_utils.features.names import IMAGE_ENCODERS, IMAGE_NORMALIZATIONS, IMAGE_VIEWS
from cmr_utils.features.lexical import KIND as LEXICAL
from cmr_utils.features.lexical import READABLE
from cmr_utils.fit import MODELS
from cmr_utils.features.names import BACKENDS, PRECISIONS
from cmr_utils.evaluate.retrieval import SCORES

PATH_KEYS = ("data_dir", "image_weights", "cache_dir", "given_dir")


class ParameterError(ValueError):
    pass


def _one_of(*allowed):
    return lambda v: v in allowed, "one of " + ", ".join(map(repr, allowed))


def _int_at_least(low: int, note: str = ""):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer ≥ {low}{note}"


def _int_in(low: int, high: int, note: str = ""):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
            f"an integer ≥ {low} and ≤ {high:,}{note}")


def _bool():
    return lambda v: isinstance(v, bool), "true or false"


SEED = _int_in(0, 2**32 - 1)


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
    "text_kinds": _each(_one_of(*TEXT_KINDS, LEXICAL, "concat")),
    "concat_parts": (lambda v: _each(_one_of(*TEXT_KINDS, LEXICAL))[0](v) and len(set(v)) == len(v),
                     "a non-empty list of distinct text kinds, each one of "
                     + ", ".join(map(repr, (*TEXT_KINDS, LEXICAL)))),
    "lexical_dims": _int_in(1, 4096, " (SVD components; capped by the train texts and words)"),
    "lexical_parts": (lambda v: _each(_one_of(*READABLE))[0](v) and len(set(v)) == len(v),
                      "a non-empty list of distinct text kinds, each one of " + ", ".join(map(repr, READABLE))),
    "lexical_ngrams": _int_in(1, 2, " (2: word pairs too)"),
    "models": _each(_one_of(*MODELS)),
    "scores": _each(_one_of(*SCORES)),
    "latent_dims": _each(_int_at_least(1)),
    "shrinkage": _each((lambda v: 0 <= v <= 1, "a number in [0, 1]")),
    "bag_sizes": _each(_int_at_least(0, " (0: the whole split)")),
    "n_bags": _int_in(1, 1000),
    "batch_size": _int_in(1, 4096),
    "num_workers": _int_in(0, 256),
    "pca": _int_at_least(1),
    "kernel_landmarks": _int_in(2, 20000, " (Nyström landmarks: their kernel matrix is landmarks² in memory)"),
    "kernel_gamma": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                     "a number > 0, or null for the median heuristic"),
    "seed": SEED,
    "demo_seed": SEED,
    "demo_recipes": _int_in(20, 1_000_000, " (every split needs recipes)"),
    "standardize": _bool(),
    "text_windows": _bool(),
    "given_allow_pickle": _bool(),
    "select": _one_of("val", "kfold"),
    "device": (lambda v: isinstance(v, str) and bool(re.fullmatch(r"cpu|cuda(:\d+)?|mps", v)),
               "'cpu', 'cuda', 'cuda:N' or 'mps' (null: CUDA when present)"),
    "tsne_points": _int_in(10, 10_000_000, " (null: every test pair)"),
    "n_examples": _int_in(1, 20),
    "swaps": (lambda v: isinstance(v, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(w, str) and w.strip() for w in p) for p in v),
              "a list of [word, word] pairs (a photo − the first + the second)"),
    "image_encoder": _one_of(*IMAGE_ENCODERS),
    "image_views": _one_of(*IMAGE_VIEWS),
    "image_normalization": _one_of(*IMAGE_NORMALIZATIONS),
    "backend": _one_of(*BACKENDS),
    "precision": _one_of(*PRECISIONS),
    "text_layer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer (-1: the last hidden layer)"),
    "text_pooling": _one_of("mean", "cls"),
    "ingredients": _one_of("raw", "detected"),
    "text_encoder": _text("a model name or folder"),
    "cluster": (lambda v: isinstance(v, str) and bool(re.fullmatch(r"local:[1-9]\d*|tcp://.+|tls://.+", v)),
                "'local:N' (N ≥ 1 worker processes) or a scheduler address 'tcp://host:port'"),
    "synthetic_scale": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 10,
                        "a number > 0 and ≤ 10 (1: Recipe1M's size)"),
    **dict.fromkeys(PATH_KEYS, _text("a path")),
    "run_dir": _text("a path"),
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


class Loaded(dict):
    """Parameters that know where each came from (``origin``: name -> '--set ...'; the rest: their file)."""
    origin: dict


def load(path: str | Path, overrides: list[str] = ()) -> Loaded:
    """Parameters from a YAML mapping, then ``key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    params = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(params, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    params, origin = Loaded(params), {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(f"--set {item!r}: expected key=value")
        params[name.strip()] = _yaml(value, f"--set {item!r}")
        origin[name.strip()] = f"--set {item!r}"
    params.origin = origin
    return params


def _yaml(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParameterError(f"{source}{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None


def check(params: dict, declared: dict[str, dict], source: str, origin: dict | None = None) -> None:
    """Raise ParameterError for a key no notebook declares, a value whose type differs from the default
    or one that breaks its rule in ``RULES``, naming the key, where it was set (``origin`` maps a name to
    its ``--set``; else ``source``) and the values it accepts.

    ``declared`` maps notebook name to its {name: default}. A default of None accepts None;
    an int is accepted where a float is expected. Every declared parameter has its rule.
    """
    known = {}
    for nb, defaults in declared.items():
        for name, default in defaults.items():
            known.setdefault(name, (nb, default))
    for name, value in params.items():
        where = (origin or {}).get(name, source)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid names: {', '.join(sorted(known))}"
            raise ParameterError(f"{where}: unknown parameter {name!r}{hint}")
        nb, default = known[name]
        ok, accepted = RULES.get(name, (None, None))
        if not _same_type(value, default):
            raise ParameterError(
                f"{where}: parameter {name!r} should be {type(default).__name__} like the default "
                f"{default!r} in {nb}{f' ({accepted})' if accepted else ''}, got {type(value).__name__} {value!r}")
        if ok and value is not None and not ok(value):  # None passed the type check only where the default is None
            raise ParameterError(f"{where}: parameter {name!r} must be {accepted}, got {value!r}")


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
