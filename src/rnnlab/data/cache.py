"""A cache of tokenized corpora: `<key>.npy` (the ids) and `<key>.json` (the vocabulary) under `data.cache_dir`.

The key hashes the file's content and every data option that changes the ids, so an edited file or
another option is a different entry. Entries are written to a temporary file beside the target and
renamed into place (atomic on one file system): jobs or DDP ranks that build the same entry at once
each write whole files, and a reader sees a whole file or none. Both files of an entry are a
function of the key alone, so files written by different jobs always belong together.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from rnnlab.data.text import Vocab

FORMAT = 1          # bump when the loader's ids or the files' layout change
MIN_BYTES = 1 << 20  # smaller corpora load faster than their hash and entry are read


def entry_key(path: Path, options: dict) -> str:
    """sha1 of the file's bytes, then of the options (sha1: the fastest digest here, ~2 GB/s)."""
    with open(path, "rb") as f:
        content = hashlib.file_digest(f, "sha1").hexdigest()
    spec = json.dumps({"format": FORMAT, "content": content, **options}, sort_keys=True)
    return hashlib.sha1(spec.encode()).hexdigest()


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the entry from other users' jobs
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(cache_dir: str | Path, key: str, ids: np.ndarray, vocab: Vocab) -> None:
    """Write an entry; a cache that cannot be written only costs the next run a cold load."""
    root = Path(cache_dir).expanduser()
    meta = {"idx_to_token": vocab.idx_to_token, "token_freqs": vocab.token_freqs}
    try:
        root.mkdir(parents=True, exist_ok=True)
        _atomic_write(root / f"{key}.json", lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode("utf-8")))
        _atomic_write(root / f"{key}.npy", lambda f: np.save(f, ids, allow_pickle=False))
    except OSError:
        pass


def load(cache_dir: str | Path, key: str) -> tuple[np.ndarray, Vocab] | None:
    """The entry's (ids, vocab), or None when it is not (yet) there."""
    root = Path(cache_dir).expanduser()
    try:
        meta = json.loads((root / f"{key}.json").read_text(encoding="utf-8"))
        # Copy-on-write map: pages are read when batches touch them, so a hit costs the hash and the vocab.
        ids = np.load(root / f"{key}.npy", mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError):
        return None
    freqs = [tuple(tf) for tf in meta["token_freqs"]]
    return ids, Vocab.from_tokens_list(meta["idx_to_token"], freqs)
