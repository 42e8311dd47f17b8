"""Files the runs and the cache share: atomic writes, the one lock (filelock) and build-once helper (``built``),
content keys, and row-wise ``.npy`` reading and writing, so an interrupted or parallel run never leaves or reads
a half-written entry."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

import filelock
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


def clean_temporaries(dest: str | Path) -> None:
    """Remove what killed writers of ``dest`` left beside it (``atomic_file``/``atomic_dir`` temporaries).

    Call it only while holding ``locked(dest)``: every writer of ``dest`` holds that lock, so no
    temporary of a live writer can be there.
    """
    dest = Path(dest)
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.[0-9a-f]{{8}}{re.escape(dest.suffix)}")
    for p in dest.parent.glob(f".{glob.escape(dest.name)}.*"):
        if pattern.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


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
    """Hold an exclusive lock on ``<path>.lock`` (filelock, the one lock of the project): parallel runs sharing a
    cache compute each entry once."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(lock):
        yield


def built(dest: str | Path, build: Callable[[Path], None], done: str | Path | None = None) -> Path:
    """``dest``, built by ``build(dest)`` unless it is there: the cache's build-once-under-lock.

    ``done`` (default ``dest``) is the path whose existence says the entry is finished. A finished
    entry is read without a lock, so a cache shared read-only serves it; one process at a time
    builds (after clearing what a killed writer left), and a second waits and then finds it.
    """
    dest = Path(dest)
    done = Path(done) if done is not None else dest
    if not done.exists():
        with locked(dest):
            if not done.exists():
                clean_temporaries(dest)
                build(dest)
    return dest


def write_npy(path: str | Path, shape: tuple[int, int], blocks, dtype=np.float32) -> None:
    """Write a 2-D .npy file from row blocks (in order), atomically, through plain writes.

    Nothing is memory-mapped, so a file far larger than memory costs one block of resident
    memory (a memmap's touched pages would count in the writer's RSS).
    """
    n = 0
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                 "fortran_order": False, "shape": tuple(shape)})
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype)
            if block.ndim != 2 or block.shape[1] != shape[1]:
                raise ValueError(f"{path}: a block of shape {block.shape} does not fit rows of {shape[1]}")
            n += len(block)
            block.tofile(f)
        if n != shape[0]:
            raise ValueError(f"{path}: wrote {n} rows, expected {shape[0]}")


class NpyRows:
    """Rows of a 2-D .npy file read on demand with plain reads, for streaming over files larger than memory.

    ``rows[idx]`` (an int array or a slice) reads the contiguous span that covers ``idx`` and
    returns those rows as a new array (of ``dtype``, default the file's). Unlike a memmap, the
    pages read are not kept in this process's resident memory, and the object pickles as its
    path (cheap to send to a worker).
    """

    def __init__(self, path: str | Path, dtype=None):
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, self.stored = read(f)
            self.offset = f.tell()
        self.dtype = np.dtype(dtype or self.stored)
        if len(shape) != 2 or fortran:
            raise ValueError(f"{self.path}: expected a C-ordered 2-D array, got shape {shape}")
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return self.path, self.dtype

    def __setstate__(self, state):
        self.__init__(*state)

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or self.dtype, copy=False)

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.asarray(idx, np.int64).ravel()
        if len(idx) == 0:
            return np.zeros((0, self.shape[1]), self.dtype)
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"{self.path}: rows must be in [0, {len(self)}), got {idx.min()}..{idx.max()}")
        order = np.argsort(idx, kind="stable")
        wanted = idx[order]
        # one read per run of nearby rows: rows asked in another order than the file's never read it all
        cuts = np.flatnonzero(np.diff(wanted) > GAP_ROWS) + 1
        out = np.empty((len(idx), self.shape[1]), self.dtype)
        with open(self.path, "rb") as f:
            for run, rows in zip(np.split(wanted, cuts), np.split(order, cuts)):
                lo, hi = int(run[0]), int(run[-1]) + 1
                f.seek(self.offset + lo * self.shape[1] * self.stored.itemsize)
                if self.dtype == self.stored and (np.diff(run) == 1).all() and (np.diff(rows) == 1).all():
                    # rows lo..hi-1 of the file, each once, into consecutive output rows: read them in place
                    into = out[rows[0]:rows[-1] + 1]
                    if f.readinto(into) != into.nbytes:
                        raise ValueError(f"{self.path}: file ends before row {hi}; is it truncated?")
                    continue
                span = np.fromfile(f, self.stored, (hi - lo) * self.shape[1]).reshape(hi - lo, self.shape[1])
                out[rows] = span[run - lo]
        return out


GAP_ROWS = 64  # rows further apart than this are read separately, not through the span between them


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


_DIGESTS: dict[str, str] = {}  # "path|size|mtime_ns" -> digest: this process's memo of content_hash


def content_hash(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """A short SHA-256 of a file's bytes, or of a folder's files (relative paths and bytes): weights replaced
    under the same name change every cache key and stamp that holds it.

    Each file's digest is memoised by (path, size, mtime) in this process and, with ``cache_dir``, in
    ``<cache_dir>/hashes.json``, so a rerun reads no weights again.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    memo_file = Path(cache_dir) / "hashes.json" if cache_dir else None
    memo = {}
    if memo_file is not None and memo_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            memo = json.loads(memo_file.read_text())
    parts, new = [], False
    for f in files:
        st = f.stat()
        stamp = f"{f}|{st.st_size}|{st.st_mtime_ns}"
        digest = _DIGESTS.get(stamp) or memo.get(stamp)
        if not isinstance(digest, str):
            with open(f, "rb") as fh:
                digest, new = hashlib.file_digest(fh, "sha256").hexdigest()[:16], True
        _DIGESTS[stamp] = memo[stamp] = digest
        parts.append((f.relative_to(path).as_posix(), digest))
    if new and memo_file is not None:
        with contextlib.suppress(OSError):  # a read-only shared cache: hash again next time
            save_json(memo_file, memo)
    return parts[0][1] if path.is_file() else key(parts)


def check_finite(X: np.ndarray, what: str, ids) -> None:
    """Raise ValueError naming ``what`` and the first ids whose rows hold NaN or infinite values.

    A NaN that reaches retrieval would rank as a hit, so non-finite values stop the run where they enter.
    """
    X = np.asarray(X)
    if X.size == 0:  # no rows (a round whose photos all failed), or rows of no values: nothing to check
        return
    bad = ~np.isfinite(X).reshape(len(X), -1).all(1)
    if bad.any():
        first = [ids[i] for i in np.flatnonzero(bad)[:5]]
        raise ValueError(f"{what}: {int(bad.sum())} of {len(X)} rows contain NaN or infinite values, e.g. {first}")
