"""Loading trained models back from their checkpoints, for the tools that use them (generate, ensemble,
eval) and for resuming; converting checkpoints of rnnlab's older format.

Checkpoints hold only data (rnnlab checkpoint format 2, rnnlab.models.spec): they are read with
`torch.load(weights_only=True)`, which runs no code from the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from rnnlab.errors import ConfigError
from rnnlab.models.spec import CHECKPOINT_FORMAT, FORMAT_KEY

CONVERT_COMMAND = "rnnlab-convert-checkpoint"


def resolve_device(device: str | None) -> str:
    """`cpu`, `cuda` (only with a visible GPU), or None for cuda when available."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device={device!r} is invalid: allowed values are cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device=cuda but no CUDA GPU is visible on this machine: use cpu")
    return device


def pickles_objects(path: Path, error: Exception) -> bool:
    """Whether `torch.load(weights_only=True)` refused a well-formed torch.save file for the Python
    objects pickled in it (what format-1 checkpoints hold), rather than for being no checkpoint at all."""
    return (isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error)
            and zipfile.is_zipfile(path))


def format_one_error(p: Path, option: str) -> ConfigError:
    return ConfigError(
        f"{option}={str(p)!r} is a checkpoint of rnnlab format 1 (it pickles Python objects; this version reads "
        f"format {CHECKPOINT_FORMAT}, plain data): convert it with `{CONVERT_COMMAND} {p}` if you trust the file")


def read_checkpoint(path: str | Path, map_location: str = "cpu", option: str = "checkpoint",
                    mmap: bool = False) -> dict:
    """The checkpoint's dictionary, read as data only; a missing, truncated, empty, foreign or
    format-1 file is a ConfigError (one line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{option}={str(p)!r} is not a file: give a .ckpt from <run>/checkpoints/")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        if pickles_objects(p, e):
            raise format_one_error(p, option) from None
        raise _unreadable(p, option, e) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{option}={str(p)!r} is not a Lightning checkpoint (no state_dict in it)")
    return ckpt


def _unreadable(p: Path, option: str, e: Exception) -> ConfigError:
    return ConfigError(f"{option}={str(p)!r} is not a readable checkpoint ({type(e).__name__}): "
                       "it is truncated, corrupt or not a PyTorch file")


def check_format(ckpt: dict, path: str | Path, option: str = "checkpoint") -> None:
    """The checkpoint must be of the format this code reads; otherwise one line says what to do."""
    version = ckpt.get(FORMAT_KEY)
    if version is None:
        raise format_one_error(Path(path), option)
    if version != CHECKPOINT_FORMAT:
        raise ConfigError(f"{option}={str(path)!r} is a checkpoint of rnnlab format {version}, written by another "
                          f"version of rnnlab (this one reads format {CHECKPOINT_FORMAT}): use that version")


def load_language_model(path: str | Path, map_location: str | None = "cpu"):
    """Load a LanguageModel checkpoint; a missing file or another model's checkpoint is a ConfigError."""
    from rnnlab.models import LanguageModel

    map_location = resolve_device(map_location)
    ckpt = read_checkpoint(path, map_location)
    hparams = ckpt.get("hyper_parameters", {})
    if "vocab" not in hparams or "core" not in hparams:
        raise ConfigError(f"checkpoint={str(path)!r} is not a language-model checkpoint (no vocabulary in it)")
    check_format(ckpt, path)
    return LanguageModel.load_from_checkpoint(path, map_location=map_location, weights_only=True)


def convert_checkpoint(src: str | Path, dst: str | Path | None = None) -> Path:
    """Rewrite a format-1 checkpoint (pickled core/optimizer/scheduler factories) as format 2 (plain data).

    Unpickles the file in full, so use it only on files you trust. With `dst` None the file is
    converted in place and the original kept as `<name>.format1`. Returns the written path.
    """
    from rnnlab.checkpoint_io import AtomicCheckpointIO
    from rnnlab.models.spec import _plain_value, spec_of_partial

    src = Path(src)
    if not src.is_file():
        raise ConfigError(f"checkpoint={str(src)!r} is not a file")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:
        raise _unreadable(src, "checkpoint", e) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"checkpoint={str(src)!r} is not a Lightning checkpoint (no state_dict in it)")
    if ckpt.get(FORMAT_KEY) == CHECKPOINT_FORMAT:
        raise ConfigError(f"checkpoint={str(src)!r} already is of format {CHECKPOINT_FORMAT}: nothing to convert")
    hparams = dict(ckpt.get("hyper_parameters", {}))
    for key in ("core", "optimizer", "scheduler"):
        if key in hparams and not isinstance(hparams[key], dict):
            hparams[key] = spec_of_partial(hparams[key])
    ckpt["hyper_parameters"] = {k: _plain_value(v) for k, v in hparams.items()}
    if "datamodule_hyper_parameters" in ckpt:
        ckpt["datamodule_hyper_parameters"] = {k: _plain_value(v)
                                               for k, v in ckpt["datamodule_hyper_parameters"].items()}
    ckpt[FORMAT_KEY] = CHECKPOINT_FORMAT
    if dst is None:
        dst = src
        backup = src.with_name(src.name + ".format1")
        backup.write_bytes(src.read_bytes())
    dst = Path(dst)
    AtomicCheckpointIO().save_checkpoint(ckpt, dst)
    read_checkpoint(dst)  # loads as data only, or says what is left
    return dst
