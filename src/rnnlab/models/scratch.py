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
step is one matmul for all gates; only the recurrence is a Python loop. Training runs the cells'
written-out backpropagation through time (d2l 9.7), checked against autograd by gradcheck.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _Cell(nn.Module):
    """One layer in one direction: owns W_x (input -> gates), W_h (hidden -> gates) and two biases.

    A cell states its equations twice: `step` for autograd (what torch.compile traces and fuses),
    and `forward_through_time` / `backward_through_time`, backpropagation through time written
    out (`_BPTT`). Going backwards, the written-out backward does per step only what depends on the
    step after it. The factors fixed by the forward pass are computed for all steps at once, and
    the gradients of W_h and b_h become one matmul and one sum over all steps at the end. Autograd
    would compute and accumulate a small weight gradient at every step.
    """

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

    def forward_through_time(self, xp, h, c, W_h, b_h, order, save: bool):
        """Run the steps in `order`; return outputs (T, B, H), final h and c, and what backward needs."""
        raise NotImplementedError

    def backward_through_time(self, saved, W_h, d_out, dh, dc, order):
        """Gradients of xp, h0, c0, W_h, b_h from those of the outputs and the final state."""
        raise NotImplementedError


def _previous(states: Tensor, first: Tensor, order: range) -> Tensor:
    """The state each step started from, for all steps at once: `states` shifted by one in `order`."""
    if order.step > 0:
        return torch.cat([first[None], states[:-1]])
    return torch.cat([states[1:], first[None]])


def _weight_grads(h_prev: Tensor, d_hp: Tensor) -> tuple[Tensor, Tensor]:
    """dW_h and db_h over all steps at once: one (H x T*B) @ (T*B x gates*H) matmul and one sum."""
    return h_prev.flatten(0, 1).T @ d_hp.flatten(0, 1), d_hp.sum((0, 1))


class RNNCell(_Cell):
    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__(input_size, hidden_size)
        self.nonlinearity = nonlinearity
        self.phi = torch.tanh if nonlinearity == "tanh" else torch.relu

    def _phi_into(self, a: Tensor, out: Tensor) -> Tensor:
        return torch.tanh(a, out=out) if self.nonlinearity == "tanh" else torch.clamp(a, min=0, out=out)

    def step(self, xp, h, c):
        return self.phi(xp + torch.addmm(self.b_h, h, self.W_h)), None

    def forward_through_time(self, xp, h, c, W_h, b_h, order, save):
        h0, xpb, outputs = h, xp + b_h, torch.empty_like(xp)
        for t in order:
            h = self._phi_into(torch.addmm(xpb[t], h, W_h), outputs[t])
        if not save:
            return outputs, h, None, None
        dphi = 1 - outputs * outputs if self.nonlinearity == "tanh" else (outputs > 0).to(outputs.dtype)
        return outputs, h, None, (_previous(outputs, h0, order), dphi)

    def backward_through_time(self, saved, W_h, d_out, dh, dc, order):
        h_prev, dphi = saved
        # Gradient of the pre-activation (= of xp and of h W_h + b_h): (d_out + dh) * dphi, with the part
        # that does not depend on later steps computed for all steps at once; two kernels per step.
        d_a, W_hT = d_out * dphi, W_h.T
        for t in reversed(order):
            dh = torch.addcmul(d_a[t], dh, dphi[t], out=d_a[t]) @ W_hT
        return (d_a, dh, None, *_weight_grads(h_prev, d_a))


class GRUCell(_Cell):
    num_gates = 3

    def step(self, xp, h, c):
        xr, xz, xn = xp.chunk(3, -1)
        hr, hz, hn = torch.addmm(self.b_h, h, self.W_h).chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None

    def forward_through_time(self, xp, h, c, W_h, b_h, order, save):
        T, B, H = xp.shape[0], xp.shape[1], self.hidden_size
        h0, outputs = h, xp.new_empty(T, B, H)
        rz, n_all, hn_all = xp.new_empty(T, B, 2 * H), xp.new_empty(T, B, H), xp.new_empty(T, B, H)
        for t in order:
            hp = torch.addmm(b_h, h, W_h)
            gates = torch.sigmoid(xp[t, :, :2 * H] + hp[:, :2 * H], out=rz[t])
            r, z = gates[:, :H], gates[:, H:]
            hn = hn_all[t].copy_(hp[:, 2 * H:])
            n = torch.tanh(torch.addcmul(xp[t, :, 2 * H:], r, hn), out=n_all[t])
            h = torch.addcmul(n, z, h - n, out=outputs[t])  # (1 - z) * n + z * h
        return outputs, h, None, (_previous(outputs, h0, order), rz, n_all, hn_all) if save else None

    def backward_through_time(self, saved, W_h, d_out, dh, dc, order):
        h_prev, rz, n, hn = saved
        H = self.hidden_size
        r, z = rz[..., :H], rz[..., H:]
        # Factors that do not depend on later steps, for all steps at once: d(pre-activation) = dh * k.
        k_n = (1 - z) * (1 - n * n)
        k_z = (h_prev - n) * z * (1 - z)
        k_r = k_n * hn * r * (1 - r)
        k_hp = torch.cat([k_r, k_z, k_n * r], -1)  # for h W_h + b_h: the reset gate scales its n part
        T, B = d_out.shape[:2]
        d_hp, d_h_all = torch.empty_like(k_hp), torch.empty_like(d_out)
        for t in reversed(order):
            dh = torch.add(d_out[t], dh, out=d_h_all[t])
            torch.mul(k_hp[t].view(B, 3, H), dh[:, None], out=d_hp[t].view(B, 3, H))  # dh times each gate's factor
            dh = torch.addmm(dh * z[t], d_hp[t], W_h.T)
        d_xp = (torch.stack([k_r, k_z, k_n], -2) * d_h_all[..., None, :]).view(T, B, 3 * H)
        return (d_xp, dh, None, *_weight_grads(h_prev, d_hp))


class LSTMCell(_Cell):
    num_gates = 4

    def step(self, xp, h, c):
        i, f, g, o = (xp + torch.addmm(self.b_h, h, self.W_h)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward_through_time(self, xp, h, c, W_h, b_h, order, save):
        T, B, H = xp.shape[0], xp.shape[1], self.hidden_size
        h0, c0, xpb = h, c, xp + b_h
        outputs, cells, tanh_c = xp.new_empty(T, B, H), xp.new_empty(T, B, H), xp.new_empty(T, B, H)
        acts = torch.empty_like(xp)  # sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
        for t in order:
            gates = torch.addmm(xpb[t], h, W_h)
            a = torch.sigmoid(gates, out=acts[t])
            torch.tanh(gates[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
            i, f, g, o = a.chunk(4, -1)
            c = torch.addcmul(f * c, i, g, out=cells[t])
            h = torch.mul(o, torch.tanh(c, out=tanh_c[t]), out=outputs[t])
        if not save:
            return outputs, h, c, None
        return outputs, h, c, (_previous(outputs, h0, order), _previous(cells, c0, order), acts, tanh_c)

    def backward_through_time(self, saved, W_h, d_out, dh, dc, order):
        h_prev, c_prev, acts, tanh_c = saved
        i, f, g, o = acts.chunk(4, -1)
        # d(pre-activations) = (dc, dc, dc, dh) * k, with k fixed by the forward pass: all steps at once.
        k = torch.cat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], -1)
        dc_from_h = o * (1 - tanh_c * tanh_c)
        d_gates = torch.empty_like(k)
        for t in reversed(order):
            dh = d_out[t] + dh
            dc = torch.addcmul(dc, dh, dc_from_h[t])
            torch.mul(torch.cat([dc, dc, dc, dh], -1), k[t], out=d_gates[t])
            dc = dc * f[t]
            dh = d_gates[t] @ W_h.T
        return (d_gates, dh, dc, *_weight_grads(h_prev, d_gates))


class _BPTT(torch.autograd.Function):
    """One layer in one direction over all time steps, with the cell's written-out backward."""

    @staticmethod
    def forward(ctx, cell, order, xp, h0, c0, W_h, b_h):
        outputs, h, c, saved = cell.forward_through_time(xp, h0, c0, W_h, b_h, order, save=True)
        ctx.cell, ctx.order, ctx.saved = cell, order, saved
        # Under autocast (trainer.precision=bf16-mixed / 16-mixed) the steps compute in a lower precision
        # than the float32 weights and initial state. Lightning's precision plugin runs backward outside
        # autocast, so backward casts everything to the forward's compute dtype itself (as autograd's
        # own backward of the autocast ops would), and hands each gradient back in its input's dtype.
        ctx.compute_dtype = outputs.dtype
        ctx.input_dtypes = tuple(None if t is None else t.dtype for t in (xp, h0, c0, W_h, b_h))
        ctx.save_for_backward(W_h)
        return outputs, h, c

    @staticmethod
    @torch.autograd.function.once_differentiable  # a written-out first derivative: no double backward
    def backward(ctx, d_out, dh, dc):
        (W_h,) = ctx.saved_tensors
        dtype = ctx.compute_dtype

        def cast(t, to=dtype):
            return t if t is None or to is None or t.dtype == to else t.to(to)

        saved = tuple(cast(t) for t in ctx.saved)
        grads = ctx.cell.backward_through_time(saved, cast(W_h), cast(d_out), cast(dh), cast(dc), ctx.order)
        return (None, None, *(cast(g, to) for g, to in zip(grads, ctx.input_dtypes)))


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

    def recurrent_weight_names(self) -> list[str]:
        """The hidden-to-hidden weights (what module.weight_drop masks): every cell's W_h."""
        return [f"cells.{k}.W_h" for k in range(len(self.cells))]

    def _run_direction(self, cell: _Cell, x: Tensor, h: Tensor, c: Tensor | None, reverse: bool):
        xp = cell.project_inputs(x)
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        if torch.compiler.is_compiling():
            # Under torch.compile, autograd's per-step graph is what gets traced and fused. unbind, not
            # xp[t]: the backward of one unbind is one stack, while indexing step by step would
            # allocate a zero gradient of the whole sequence for every step.
            xps, outputs = xp.unbind(0), [None] * x.shape[0]
            for t in steps:
                h, c = cell.step(xps[t], h, c)
                outputs[t] = h
            return torch.stack(outputs), h, c
        if torch.is_grad_enabled():
            return _BPTT.apply(cell, steps, xp, h, c, cell.W_h, cell.b_h)
        outputs, h, c, _ = cell.forward_through_time(xp, h, c, cell.W_h, cell.b_h, steps, save=False)
        return outputs, h, c

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
