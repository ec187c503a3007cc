"""The one factory for recurrent cores: six interchangeable kinds behind torch.nn.RNN's interface.

Every core maps input (batch, time, features) and an optional state to
(outputs (batch, time, hidden * directions), final state), with the state laid out as
torch.nn.RNN/GRU/LSTM lay it out: (layers * directions, batch, hidden), a pair (h, c) for LSTMs.
"""

from __future__ import annotations

import types
import warnings
from typing import Annotated, Any, Mapping

import torch
from torch import nn

from rnnlab import compat
from rnnlab.errors import ConfigError
from rnnlab.models.scratch import ScratchGRU, ScratchLSTM, ScratchRNN
from rnnlab.options import BOOL, FRACTION, POSITIVE_INT, Name, Rule, checked, choice

CORES = {
    "rnn": nn.RNN,
    "gru": nn.GRU,
    "lstm": nn.LSTM,
    "rnn_scratch": ScratchRNN,
    "gru_scratch": ScratchGRU,
    "lstm_scratch": ScratchLSTM,
}
NONLINEARITIES = ("tanh", "relu")
# model.compile: false (eager), true (torch.compile's default mode) or a torch.compile mode by name.
COMPILE_OPTIONS = (False, True, "default", "reduce-overhead", "max-autotune")


def compile_mode(compile) -> str | None:
    """The torch.compile mode that a model.compile value asks for (rnnlab.schema checks it); None for eager."""
    return None if compile is False else "default" if compile is True else compile


def dropout_between_layers(values: Mapping[str, Any], name: Name) -> None:
    """Dropout acts between stacked layers in every core (torch's and rnnlab.models.scratch), so with one
    layer it would do nothing."""
    dropout, layers = values["dropout"], values["num_layers"]
    if dropout and layers == 1:
        raise ConfigError(f"{name('dropout')}={dropout:g} has no effect with {name('num_layers')}=1: dropout acts "
                          f"between stacked layers; set {name('num_layers')} >= 2 or {name('dropout')}=0")


COMPILE = Rule(lambda v: isinstance(v, bool) or v in COMPILE_OPTIONS,
               "must be one of " + ", ".join(str(o).lower() for o in COMPILE_OPTIONS))


@checked(dropout_between_layers)
def build_core(kind: Annotated[str, choice(*CORES)], input_size: int,
               hidden_size: Annotated[int, POSITIVE_INT] = 256, num_layers: Annotated[int, POSITIVE_INT] = 1,
               bidirectional: Annotated[bool, BOOL] = False, dropout: Annotated[float, FRACTION] = 0.0,
               nonlinearity: Annotated[str, choice(*NONLINEARITIES)] = "tanh",
               compile: Annotated[bool | str, COMPILE] = False) -> nn.Module:
    """Build a core of the given kind; its options are declared (and checked) in this signature.

    `compile` (COMPILE_OPTIONS) compiles the core in place with torch.compile in that mode (same
    parameters and state_dict): for the scratch cores the time loop is traced once and its element-wise
    gate arithmetic fused, which on a GPU removes most of the per-step kernel launches; the built-in
    cores are traced through dynamo's allow_rnn (see compile_core). `reduce-overhead` also
    replays forward and backward as CUDA graphs on a GPU; on a CPU torch.compile skips the graphs and
    it runs as `default`. The first batches pay the compilation.
    """
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, dropout=float(dropout), batch_first=True)
    if kind.startswith("rnn"):
        kwargs["nonlinearity"] = nonlinearity
    mode = compile_mode(compile)
    core = CORES[kind](input_size, hidden_size, **kwargs)
    if mode is not None:
        compile_core(core, mode)
    return core


def compile_core(core: nn.Module, mode: str) -> None:
    """torch.compile the core's forward in place, shapes static (every training batch has the same shape).

    Dynamo does not start tracing in a frame of torch.nn (torch 2.13: `nn.Module.compile()` of
    torch.nn.RNN/GRU/LSTM captures nothing and runs eager), so the compiled function is a frame of ours
    that calls the module's forward, with a code object of its own per core: dynamo's recompile limit
    (8) counts per code object, and a shared one would leave the ninth core built in a process (a
    sweep in one process, the tests) silently eager. Inside it dynamo leaves a built-in recurrence to
    eager unless its allow_rnn is set (rnnlab.compat.rnn_tracing), which is on while tracing a built-in
    core, except nn.LSTM on a CPU: inductor fails on its oneDNN kernel there (torch 2.13, TypeError
    for aten.mkldnn_rnn_layer), so that one stays eager inside the compiled function.
    `reduce-overhead` off a CUDA device runs as `default` (torch.compile skips the CUDA graphs), with
    one warning. tests/cores/test_cores.py fails if any of this stops holding.
    """
    builtin, lstm = isinstance(core, nn.RNNBase), isinstance(core, nn.LSTM)
    forward = core.forward

    def compiled_forward(x, state=None):
        return forward(x, state)

    own = types.FunctionType(compiled_forward.__code__.replace(), compiled_forward.__globals__,
                             compiled_forward.__name__, compiled_forward.__defaults__, compiled_forward.__closure__)
    compiled = torch.compile(own, mode=mode, dynamic=False)
    unwarned = [mode == "reduce-overhead"]

    def run(x, state=None):
        graphs = mode == "reduce-overhead" and x.device.type == "cuda"
        if unwarned[0] and not graphs:
            unwarned[0] = False
            warnings.warn(f"model.compile=reduce-overhead: CUDA graphs need a CUDA device; on {x.device.type} "
                          "the core runs compiled as model.compile=default")
        if graphs:
            # Each call is a new training step for CUDA graph trees; the carried state is copied out of
            # the graphs' memory pool, which the next replay reuses (not yet measured on a GPU: see
            # bench/gpu_check.py and tests/gpu/test_gpu.py).
            torch.compiler.cudagraph_mark_step_begin()
        with compat.rnn_tracing(builtin and not (lstm and x.device.type == "cpu")):
            outputs, state = compiled(x, state)
        if graphs:
            state = tuple(s.clone() for s in state) if isinstance(state, tuple) else state.clone()
        return outputs, state

    core.forward = run


def output_size(core: nn.Module) -> int:
    """Width of the core's outputs: hidden size times the number of directions."""
    return core.hidden_size * (2 if core.bidirectional else 1)


def recurrent_weight_names(core: nn.Module) -> list[str]:
    """The names of the core's hidden-to-hidden weights, what `module.weight_drop` masks, as the core declares
    them: its own `recurrent_weight_names()` method (the scratch cores: `cells.*.W_h`), and for torch.nn.RNN,
    GRU and LSTM their documented `weight_hh_l{k}` (`_reverse`); none for a core that declares nothing (the
    MLP, a new core without the method)."""
    declared = getattr(type(core), "recurrent_weight_names", None)
    if declared is not None:
        return list(declared(core))
    if isinstance(core, nn.RNNBase):
        directions = ("", "_reverse") if core.bidirectional else ("",)
        return [f"weight_hh_l{layer}{d}" for layer in range(core.num_layers) for d in directions]
    return []


def weight_drop_names(core: nn.Module, weight_drop: float) -> list[str]:
    """The weights `module.weight_drop` masks in `core` (none at 0). A core that declares no recurrent
    weights, or names some that are not its parameters, is refused in one line: weight drop is never
    silently ignored."""
    if not weight_drop:
        return []
    names = recurrent_weight_names(core)
    kind = f"{type(core).__module__}.{type(core).__qualname__}"
    if not names:
        raise ConfigError(f"module.weight_drop={weight_drop:g} is invalid: the core {kind} declares no recurrent "
                          "(hidden-to-hidden) weights to drop (a recurrent_weight_names() method); use 0")
    unknown = sorted(set(names) - {n for n, _ in core.named_parameters()})
    if unknown:
        raise ConfigError(f"module.weight_drop={weight_drop:g} is invalid: the core {kind} declares recurrent weights "
                          f"that are not its parameters: {', '.join(unknown)}")
    return names


def detach_state(state):
    """Cut the autograd graph at a batch boundary (truncated backpropagation through time)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
