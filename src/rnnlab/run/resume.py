"""Checks of a resume checkpoint (`ckpt_path`) before training starts."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from rnnlab.errors import ConfigError


def check_checkpoint(ckpt_path: str | None, module: L.LightningModule) -> None:
    """A resume checkpoint must exist and hold this model's weights (same parameter names and shapes)."""
    if ckpt_path in (None, "last"):
        return
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a file: give a checkpoint path, last, or null")
    try:
        # mmap: only the tensors' metadata is read here; Lightning loads the weights once, in fit.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        saved = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    except Exception as e:  # not a Lightning checkpoint at all
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a readable Lightning checkpoint ({type(e).__name__})") from None
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if saved != wanted:
        diff = sorted(set(saved) ^ set(wanted)) or sorted(k for k in wanted if saved[k] != wanted[k])
        raise ConfigError(f"ckpt_path={ckpt_path!r} holds another model's weights (differs in {diff[0]}, ...): "
                          "resume with the model, data and options it was trained with")
