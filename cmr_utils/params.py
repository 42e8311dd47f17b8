"""Parameters: read each notebook's ``parameters`` cell and check a run's parameters against them.

papermill only warns about a parameter no notebook declares; here a misspelt key or a value of
the wrong type stops the run before anything executes, naming the key, the file and the closest
valid name.
"""
from __future__ import annotations

import ast
import difflib
from pathlib import Path

import yaml


class ParameterError(ValueError):
    pass


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
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(f"--set {item!r}: expected key=value")
        params[name.strip()] = yaml.safe_load(value)
    return params


def check(params: dict, declared: dict[str, dict], source: str) -> None:
    """Raise ParameterError for a key no notebook declares or a value whose type differs from the default.

    ``declared`` maps notebook name to its {name: default}. A default of None accepts any value;
    an int is accepted where a float is expected.
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


def _same_type(value, default) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and all(
            _same_type(v, default[0]) for v in value) if default else isinstance(value, (list, tuple))
    return isinstance(value, type(default))
