"""A cache of tokenized corpora: `<key>.npy` (the ids) and `<key>.json` (the vocabulary) under `data.cache_dir`.

The key hashes the file's content and every data option that changes the ids, so an edited file or
another option is a different entry. Entries are written to a temporary file beside the target and
renamed into place (atomic on one file system): jobs or DDP ranks that build the same entry at once
each write whole files, and a reader sees a whole file or none. Both files of an entry are a
function of the key alone, so files written by different jobs always belong together.

The `.json` file also holds checksums of the ids (their dtype, shape and bytes) and of the
vocabulary, checked on every load: an entry damaged on disk (ids overwritten in place, a vocabulary
edited) is discarded with a warning and the corpus tokenized again, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from rnnlab.data.text import Vocab

log = logging.getLogger(__name__)

FORMAT = 2          # bump when the loader's ids or the files' layout change (2: checksums in the .json)
MIN_BYTES = 1 << 20  # smaller corpora load faster than their hash and entry are read


def entry_key(path: Path, options: dict) -> str:
    """sha1 of the file's bytes, then of the options (sha1: the fastest digest here, ~1.2-2 GB/s)."""
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


def ids_checksum(ids: np.ndarray) -> dict:
    """dtype, shape and sha1 of the ids' bytes (as the .npy file holds them after its header)."""
    digest = hashlib.sha1(np.ascontiguousarray(ids)).hexdigest()
    return {"dtype": ids.dtype.str, "shape": list(ids.shape), "sha1": digest}


def file_checksum(npy: Path) -> dict:
    """`ids_checksum` of an .npy file, read in chunks after its header: bounded memory, and no page of the
    file mapped into the process (a hit's memory stays what the batches touch). Costs one read of the
    ids, about as long as the key's hash of the text (char ids are a byte per character)."""
    with open(npy, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        digest = hashlib.file_digest(f, "sha1").hexdigest()  # from the current position: the ids' bytes
    # ids are saved in C order; a Fortran-order file is not one this cache wrote
    return {"dtype": dtype.str, "shape": list(shape), "sha1": digest if not fortran_order else "fortran order"}


def vocab_checksum(idx_to_token: list, token_freqs: list) -> str:
    return hashlib.sha1(json.dumps([idx_to_token, token_freqs], ensure_ascii=False).encode("utf-8")).hexdigest()


def save(cache_dir: str | Path, key: str, ids: np.ndarray, vocab: Vocab) -> None:
    """Write an entry; a cache that cannot be written only costs the next run a cold load."""
    root = Path(cache_dir).expanduser()
    freqs = [list(tf) for tf in vocab.token_freqs]  # as JSON reads them back
    meta = {"idx_to_token": vocab.idx_to_token, "token_freqs": freqs,
            "vocab_sha1": vocab_checksum(vocab.idx_to_token, freqs), "ids": ids_checksum(ids)}
    try:
        root.mkdir(parents=True, exist_ok=True)
        _atomic_write(root / f"{key}.json", lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode("utf-8")))
        _atomic_write(root / f"{key}.npy", lambda f: np.save(f, ids, allow_pickle=False))
    except OSError:
        pass


def damage(meta: object, npy: Path) -> str | None:
    """What is wrong with an entry (its files do not match the checksums its .json holds), or None."""
    if not isinstance(meta, dict) or not all(k in meta for k in ("idx_to_token", "token_freqs", "vocab_sha1", "ids")):
        return "its .json is not an entry's"
    if vocab_checksum(meta["idx_to_token"], meta["token_freqs"]) != meta["vocab_sha1"]:
        return "the vocabulary does not match its checksum"
    if file_checksum(npy) != meta["ids"]:
        return "the ids do not match their checksum"
    return None


def discard(root: Path, key: str, why: str) -> None:
    """Warn and remove a damaged entry (the caller tokenizes the corpus again and writes it anew)."""
    log.warning("corpus cache entry %s is damaged (%s): discarded, the corpus is tokenized again", root / key, why)
    for suffix in (".npy", ".json"):
        try:
            (root / f"{key}{suffix}").unlink(missing_ok=True)
        except OSError:
            pass


def load(cache_dir: str | Path, key: str) -> tuple[np.ndarray, Vocab] | None:
    """The entry's (ids, vocab), or None when it is not (yet) there or is damaged (then discarded)."""
    root = Path(cache_dir).expanduser()
    npy = root / f"{key}.npy"
    try:
        meta = json.loads((root / f"{key}.json").read_text(encoding="utf-8"))
        why = damage(meta, npy)
        # Copy-on-write map: pages are read when batches touch them.
        ids = None if why else np.load(npy, mmap_mode="c", allow_pickle=False)
    except FileNotFoundError:  # not written yet, or half an entry (a writer died between its files)
        return None
    except OSError:  # unreadable here (permissions): a cold load, and the entry left to its owner
        return None
    except ValueError as e:  # not JSON or not UTF-8, a damaged .npy header
        why = f"its files cannot be read ({type(e).__name__})"
    if not why and ids.size and (int(ids.min()) < 0 or int(ids.max()) >= len(meta["idx_to_token"])):
        why = f"ids outside its vocabulary of {len(meta['idx_to_token'])} tokens"  # a checksum written over bad ids
    if why:
        discard(root, key, why)
        return None
    freqs = [tuple(tf) for tf in meta["token_freqs"]]
    return ids, Vocab.from_tokens_list(meta["idx_to_token"], freqs)
