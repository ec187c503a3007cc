"""The one factory for recurrent cores: six interchangeable kinds behind torch.nn.RNN's interface.

Every core maps input (batch, time, features) and an optional state to
(outputs (batch, time, hidden * directions), final state), with the state laid out as
torch.nn.RNN/GRU/LSTM lay it out: (layers * directions, batch, hidden), a pair (h, c) for LSTMs.
"""

from __future__ import annotations

from torch import nn

from rnnlab.models.scratch import ScratchGRU, ScratchLSTM, ScratchRNN

CORES = {
    "rnn": nn.RNN,
    "gru": nn.GRU,
    "lstm": nn.LSTM,
    "rnn_scratch": ScratchRNN,
    "gru_scratch": ScratchGRU,
    "lstm_scratch": ScratchLSTM,
}
NONLINEARITIES = ("tanh", "relu")


def build_core(kind: str, input_size: int, hidden_size: int = 256, num_layers: int = 1,
               bidirectional: bool = False, dropout: float = 0.0, nonlinearity: str = "tanh",
               compile: bool = False) -> nn.Module:
    """Build a core of the given kind (rnnlab.schema has checked the config's options).

    `compile=True` compiles the core in place with torch.compile (same parameters and state_dict):
    for the scratch cores the time loop is traced once and its element-wise gate arithmetic fused,
    which on a GPU removes most of the per-step kernel launches. The first batches pay the compilation.
    """
    if kind not in CORES:
        raise ValueError(f"kind={kind!r} is not a core: one of {', '.join(CORES)}")
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, dropout=float(dropout), batch_first=True)
    if kind.startswith("rnn"):
        kwargs["nonlinearity"] = nonlinearity
    core = CORES[kind](input_size, hidden_size, **kwargs)
    if compile:
        core.compile(dynamic=False)
    return core


def output_size(core: nn.Module) -> int:
    """Width of the core's outputs: hidden size times the number of directions."""
    return core.hidden_size * (2 if core.bidirectional else 1)


def recurrent_weight_names(core: nn.Module) -> list[str]:
    """Names of the hidden-to-hidden weight matrices (built-in `weight_hh_l*`, scratch `cells.*.W_h`)."""
    return [n for n, _ in core.named_parameters() if n.split(".")[-1].startswith(("weight_hh", "W_h"))]


def detach_state(state):
    """Cut the autograd graph at a batch boundary (truncated backpropagation through time)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
