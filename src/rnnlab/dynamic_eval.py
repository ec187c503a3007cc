"""Dynamic evaluation (Krause et al., 2018): adapt a trained language model to the held-out stream as it reads it.

The stream is read in order as one sequence, in segments of `segment_len` tokens. Each segment is
scored first, with the weights adapted on the segments before it only, and then one SGD step on
that segment's loss moves the weights, pulled back towards the trained weights by `decay`. No token
is seen before it is predicted, so the perplexity stays an honest held-out figure.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.models.cores import detach_state
from rnnlab.options import POSITIVE_INT, number

# The options of dynamic evaluation, declared once for every class that takes them.
SEGMENT_LEN = POSITIVE_INT
LR = number(0, allowed="must be a number >= 0")
DECAY = number(0, 1)


def dynamic_log_probs(model, tokens: Tensor, segment_len: int = 50, lr: float = 1e-3, decay: float = 0.0) -> Tensor:
    """log p(tokens[t + 1] | tokens[:t + 1]) for every token after the first (float64, on the model's
    device), under `model` adapted online; lr=0: the plain log-probabilities of the stream read in order.

    The model is adapted in place and restored afterwards (weights and train/eval mode); a deep copy
    of a LightningModule would also copy the Trainer it points to.
    """
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.eval()  # no dropout: adaptation follows the data, not the training noise
    # cuDNN's recurrent layers compute a backward pass only in training mode: keep them there, dropout off.
    cudnn_layers = [(m, m.dropout) for m in model.modules() if isinstance(m, nn.RNNBase)] if lr > 0 else []
    for layer, _ in cudnn_layers:
        layer.dropout = 0.0
        layer.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params] if decay else None
    stream = tokens.to(params[0].device).long()[None]  # ids may be stored narrow
    scores, state = [], None
    try:
        with torch.set_grad_enabled(lr > 0):
            for start in range(0, stream.shape[1] - 1, segment_len):
                y = stream[:, start + 1:start + 1 + segment_len]
                x = stream[:, start:start + y.shape[1]]
                logits, state = model(x, state)
                log_probs = F.log_softmax(logits.float(), -1).gather(-1, y[..., None])[0, :, 0]
                scores.append(log_probs.detach().double())  # scored before the weights see these tokens
                state = detach_state(state)
                if lr > 0:
                    model.zero_grad(set_to_none=True)
                    (-log_probs.mean()).backward()
                    with torch.no_grad():
                        for p in params:
                            if p.grad is not None:
                                p.add_(p.grad, alpha=-lr)
                        if decay:
                            for p, t in zip(params, trained):
                                p.lerp_(t, decay)
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(saved)
        for layer, dropout in cudnn_layers:
            layer.dropout = dropout
        model.train(was_training)
    return torch.cat(scores)


def perplexity(log_probs: Tensor) -> float:
    """exp of the mean negative log-probability per token."""
    return math.exp(-log_probs.mean().item())


def dynamic_perplexity(model, tokens: Tensor, segment_len: int = 50, lr: float = 1e-3, decay: float = 0.0) -> float:
    """Perplexity of `tokens` under dynamic evaluation; with lr=0, the plain perplexity of the stream read in order."""
    return perplexity(dynamic_log_probs(model, tokens, segment_len, lr, decay))
