"""What the runner checks before it touches a run folder: the inputs a run names exist and answer.

A run with a missing data folder, given-feature folder or weights file, or a cluster that does not
answer, would fail minutes in and leave a half-rewritten run folder behind; checked here, it stops
in a second with every problem named and the folder as it was.
"""
from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

LAYER_FILES = ("layer1.json", "layer2.json")


def problems(params: dict) -> list[str]:
    """What is wrong with the inputs one point's parameters name (paths as the runner expands them)."""
    from cmr_utils.runner.run import expand_path
    found = []
    path = {k: Path(expand_path(str(params[k]))).expanduser() for k in ("data_dir", "given_dir", "image_weights")
            if params.get(k)}
    if "data_dir" in path:
        if not path["data_dir"].is_dir():
            found.append(f"data_dir {path['data_dir']} is not a folder")
        else:
            missing = [f for f in LAYER_FILES if not (path["data_dir"] / f).is_file()]
            if missing:
                found.append(f"data_dir {path['data_dir']} has no {' or '.join(missing)} (Recipe1M layout)")
    if "given_dir" in path and not path["given_dir"].is_dir():
        found.append(f"given_dir {path['given_dir']} is not a folder")
    if "image_weights" in path and not path["image_weights"].is_file():
        found.append(f"image_weights {path['image_weights']} is not a file")
    text = str(params.get("text_encoder") or "")
    if text.startswith(("/", "./", "../", "~", "$")) and not Path(expand_path(text)).expanduser().is_dir():
        found.append(f"text_encoder {text} is not a folder (a saved model: config.json, tokenizer, weights)")
    cluster = str(params.get("cluster") or "")
    if cluster.startswith(("tcp://", "tls://")) and not _answers(cluster):
        found.append(f"cluster {cluster}: no scheduler answers there")
    return found


def _answers(address: str, timeout: float = 3.0) -> bool:
    url = urlsplit(address)
    try:
        with socket.create_connection((url.hostname, url.port or 8786), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
