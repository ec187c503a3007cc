"""The book's scratch models (d2l 9.5 / 10.1 / 10.2), as written there: a Python loop over time steps
with a separate matmul per gate and per step and the output layer inside the loop. The benchmark's
baseline for "from scratch"."""

from __future__ import annotations

import torch
from torch import nn

GATES = {"rnn": ["h"], "gru": ["z", "r", "h"], "lstm": ["i", "f", "o", "c"]}


class BookStyleRNN(nn.Module):
    def __init__(self, cell: str, vocab_size: int, hidden: int):
        super().__init__()
        self.cell, self.vocab_size, self.hidden = cell, vocab_size, hidden

        def normal(*shape):
            return nn.Parameter(torch.randn(*shape) * 0.01)

        self.W_x = nn.ParameterDict({g: normal(vocab_size, hidden) for g in GATES[cell]})
        self.W_h = nn.ParameterDict({g: normal(hidden, hidden) for g in GATES[cell]})
        self.b = nn.ParameterDict({g: nn.Parameter(torch.zeros(hidden)) for g in GATES[cell]})
        self.W_hq, self.b_q = normal(hidden, vocab_size), nn.Parameter(torch.zeros(vocab_size))

    def begin_state(self, batch: int, device):
        h = torch.zeros(batch, self.hidden, device=device)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else (h,)

    def forward(self, tokens: torch.Tensor, state):
        X = nn.functional.one_hot(tokens.T, self.vocab_size).float()  # (time, batch, vocab), as the book
        Wx, Wh, b = self.W_x, self.W_h, self.b
        outputs = []
        if self.cell == "rnn":
            (H,) = state
            for x in X:
                H = torch.tanh(x @ Wx["h"] + H @ Wh["h"] + b["h"])
                outputs.append(H @ self.W_hq + self.b_q)
            state = (H,)
        elif self.cell == "gru":
            (H,) = state
            for x in X:
                Z = torch.sigmoid(x @ Wx["z"] + H @ Wh["z"] + b["z"])
                R = torch.sigmoid(x @ Wx["r"] + H @ Wh["r"] + b["r"])
                H_tilda = torch.tanh(x @ Wx["h"] + (R * H) @ Wh["h"] + b["h"])
                H = Z * H + (1 - Z) * H_tilda
                outputs.append(H @ self.W_hq + self.b_q)
            state = (H,)
        else:
            H, C = state
            for x in X:
                I_gate = torch.sigmoid(x @ Wx["i"] + H @ Wh["i"] + b["i"])
                F = torch.sigmoid(x @ Wx["f"] + H @ Wh["f"] + b["f"])
                O_gate = torch.sigmoid(x @ Wx["o"] + H @ Wh["o"] + b["o"])
                C_tilda = torch.tanh(x @ Wx["c"] + H @ Wh["c"] + b["c"])
                C = F * C + I_gate * C_tilda
                H = O_gate * torch.tanh(C)
                outputs.append(H @ self.W_hq + self.b_q)
            state = (H, C)
        return torch.cat(outputs, dim=0), state  # (time * batch, vocab), rows time-major
