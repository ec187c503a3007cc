"""RNN, GRU and LSTM written from their equations, drop-in replacements for torch.nn.RNN/GRU/LSTM.

Same constructor arguments, same (batch, time, feature) input, same output and state layout as the
built-in modules with `batch_first=True`, so `load_builtin_weights` can copy a built-in module's
weights and the tests can check outputs and gradients against it.

The equations (d2l 9.4 / 10.1 / 10.2), with all gates of a step stacked in one matrix:
    RNN   h_t = phi(x_t W_x + b_x + h_{t-1} W_h + b_h)
    LSTM  i, f, g, o = split(x_t W_x + b_x + h_{t-1} W_h + b_h)
          c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g);  h_t = sigmoid(o) * tanh(c_t)
    GRU   r, z, n = split(x_t W_x + b_x), split(h_{t-1} W_h + b_h)
          r = sigmoid(.), z = sigmoid(.), n = tanh(n_x + r * n_h);  h_t = (1 - z) * n + z * h_{t-1}
The GRU applies the reset gate after the hidden matmul, as cuDNN and torch.nn.GRU do; the book's
variant applies it before. Speed: the input projection of all time steps is one matmul, and each
step is one matmul for all gates; only the recurrence is a Python loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _Cell(nn.Module):
    """One layer in one direction: owns W_x (input -> gates), W_h (hidden -> gates) and two biases."""

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        g = self.num_gates * hidden_size
        self.hidden_size = hidden_size
        self.W_x = nn.Parameter(torch.empty(input_size, g))
        self.W_h = nn.Parameter(torch.empty(hidden_size, g))
        self.b_x = nn.Parameter(torch.empty(g))
        self.b_h = nn.Parameter(torch.empty(g))
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn's initialisation, so both kinds train alike
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def project_inputs(self, x: Tensor) -> Tensor:
        """x (T, B, I) -> x W_x + b_x for all steps at once, (T, B, gates * H)."""
        return torch.addmm(self.b_x, x.reshape(-1, x.shape[-1]), self.W_x).view(*x.shape[:2], -1)

    def step(self, xp: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


class RNNCell(_Cell):
    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__(input_size, hidden_size)
        self.phi = torch.tanh if nonlinearity == "tanh" else torch.relu

    def step(self, xp, h, c):
        return self.phi(xp + torch.addmm(self.b_h, h, self.W_h)), None


class GRUCell(_Cell):
    num_gates = 3

    def step(self, xp, h, c):
        xr, xz, xn = xp.chunk(3, -1)
        hr, hz, hn = torch.addmm(self.b_h, h, self.W_h).chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None


class LSTMCell(_Cell):
    num_gates = 4

    def step(self, xp, h, c):
        i, f, g, o = (xp + torch.addmm(self.b_h, h, self.W_h)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class _ScratchRecurrent(nn.Module):
    """Stacks cells into layers and directions, with the same interface as torch.nn.RNN/GRU/LSTM."""

    cell_class: type[_Cell]
    has_cell_state = False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, **cell_kwargs):
        super().__init__()
        if not (bias and batch_first):
            raise ValueError("scratch cores always have biases and take batch-first input")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout = bidirectional, dropout
        self.num_directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            self.cell_class(input_size if layer == 0 else hidden_size * self.num_directions, hidden_size, **cell_kwargs)
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )

    def _run_direction(self, cell: _Cell, x: Tensor, h: Tensor, c: Tensor | None, reverse: bool):
        # unbind, not xp[t]: the backward of one unbind is one stack, while indexing step by step
        # would allocate a zero gradient of the whole sequence for every step.
        xps = cell.project_inputs(x).unbind(0)
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        outputs = [None] * x.shape[0]
        for t in steps:
            h, c = cell.step(xps[t], h, c)
            outputs[t] = h
        return torch.stack(outputs), h, c

    def forward(self, x: Tensor, state=None):
        x = x.transpose(0, 1)  # time-major inside: each step reads a contiguous slice
        n = self.num_layers * self.num_directions
        if state is None:
            zeros = x.new_zeros(n, x.shape[1], self.hidden_size)
            state = (zeros, zeros) if self.has_cell_state else zeros
        h0, c0 = state if self.has_cell_state else (state, None)
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                out, h, c = self._run_direction(self.cells[k], x, h0[k], None if c0 is None else c0[k], reverse=d == 1)
                outs.append(out)
                hs.append(h)
                cs.append(c)
            x = torch.cat(outs, -1) if self.num_directions == 2 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        h_n = torch.stack(hs)
        return x.transpose(0, 1), ((h_n, torch.stack(cs)) if self.has_cell_state else h_n)


class ScratchRNN(_ScratchRecurrent):
    cell_class = RNNCell

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", **kw):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity=nonlinearity, **kw)


class ScratchGRU(_ScratchRecurrent):
    cell_class = GRUCell


class ScratchLSTM(_ScratchRecurrent):
    cell_class = LSTMCell
    has_cell_state = True


@torch.no_grad()
def load_builtin_weights(scratch: _ScratchRecurrent, builtin: nn.RNNBase) -> None:
    """Copy the weights of a matching torch.nn.RNN/GRU/LSTM into a scratch core (same gate order)."""
    for layer in range(scratch.num_layers):
        for d in range(scratch.num_directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            cell = scratch.cells[layer * scratch.num_directions + d]
            cell.W_x.copy_(getattr(builtin, "weight_ih" + sfx).T)
            cell.W_h.copy_(getattr(builtin, "weight_hh" + sfx).T)
            cell.b_x.copy_(getattr(builtin, "bias_ih" + sfx))
            cell.b_h.copy_(getattr(builtin, "bias_hh" + sfx))
