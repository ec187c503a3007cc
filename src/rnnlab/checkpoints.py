"""Loading trained models back from their checkpoints, for the tools that use them (generate, ensemble, eval)."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnlab.errors import ConfigError


def resolve_device(device: str | None) -> str:
    """`cpu`, `cuda` (only with a visible GPU), or None for cuda when available."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device={device!r} is invalid: allowed values are cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device=cuda but no CUDA GPU is visible on this machine: use cpu")
    return device


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """The checkpoint's dictionary; a missing, truncated, empty or foreign file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint={str(p)!r} is not a file: give a .ckpt from <run>/checkpoints/")
    try:
        # Checkpoints hold the model's constructor arguments (the core factory and optimizer partials),
        # which need full unpickling: load only checkpoints you trust.
        ckpt = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ConfigError(f"checkpoint={str(p)!r} is not a readable checkpoint ({type(e).__name__}): "
                          "it is truncated, corrupt or not a PyTorch file") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"checkpoint={str(p)!r} is not a Lightning checkpoint (no state_dict in it)")
    return ckpt


def load_language_model(path: str | Path, map_location: str | None = "cpu"):
    """Load a LanguageModel checkpoint; a missing file or another model's checkpoint is a ConfigError."""
    from rnnlab.models import LanguageModel

    map_location = resolve_device(map_location)
    ckpt = read_checkpoint(path, map_location)
    hparams = ckpt.get("hyper_parameters", {})
    if "vocab" not in hparams or "core" not in hparams:
        raise ConfigError(f"checkpoint={str(path)!r} is not a language-model checkpoint (no vocabulary in it)")
    return LanguageModel.load_from_checkpoint(path, map_location=map_location, weights_only=False)
