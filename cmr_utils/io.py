"""Atomic writes and content keys, so an interrupted run never leaves a half-written cache entry."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest`` that replaces ``dest`` only if the block succeeds."""
    dest = Path(dest)
    tmp = _beside(dest)
    tmp.mkdir()
    try:
        yield tmp
        _group_readable(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest`` that is renamed onto it only if the block succeeds."""
    tmp = _beside(dest)
    tmp.touch(exist_ok=False)
    try:
        yield tmp
        _group_readable(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _beside(dest: str | Path) -> Path:
    """A fresh hidden name in ``dest``'s folder (same file system, so the final rename is atomic), same suffix."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{secrets.token_hex(4)}{dest.suffix}")


def _group_readable(path: Path) -> None:
    """Add group read (and search, for folders) to ``path`` and all it holds: a cache may be shared by a group.

    Temporaries are created like any file (not by mkstemp/mkdtemp, which make them private),
    so their modes already follow the umask.
    """
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            os.chmod(p, p.stat().st_mode | (0o050 if p.is_dir() else 0o040))


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock``: parallel runs sharing a cache compute each entry once."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        np.save(tmp, array)


def save_json(path: str | Path, obj) -> None:
    save_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str))


def save_text(path: str | Path, text: str) -> None:
    """Text, atomically: a full disk mid-write leaves the previous file intact."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def save_csv(path: str | Path, df) -> None:
    """A DataFrame as CSV, atomically: a full disk mid-write leaves the previous file intact."""
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)


def key(*parts) -> str:
    """A short stable hash of JSON-serialisable parts: the cache key of what produced a result."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def check_finite(X: np.ndarray, what: str, ids) -> None:
    """Raise ValueError naming ``what`` and the first ids whose rows hold NaN or infinite values.

    A NaN that reaches retrieval would rank as a hit, so non-finite values stop the run where they enter.
    """
    bad = ~np.isfinite(np.asarray(X)).reshape(len(X), -1).all(1)
    if bad.any():
        first = [ids[i] for i in np.flatnonzero(bad)[:5]]
        raise ValueError(f"{what}: {int(bad.sum())} of {len(X)} rows contain NaN or infinite values, e.g. {first}")
