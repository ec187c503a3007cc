"""Scratch cores against torch.nn.RNN/GRU/LSTM with copied weights: outputs, final state, gradients."""

import pytest
import torch

from rnnlab.models.cores import CORES, build_core, detach_state, output_size
from rnnlab.models.scratch import load_builtin_weights

CONFIGS = [
    dict(num_layers=1, bidirectional=False),
    dict(num_layers=2, bidirectional=False),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, bidirectional=True),
]


def pair(kind, **kw):
    torch.manual_seed(0)
    builtin = build_core(kind, 5, 6, **kw).double()
    scratch = build_core(kind + "_scratch", 5, 6, **kw).double()
    load_builtin_weights(scratch, builtin)
    return builtin, scratch


def random_state(kind, n, batch):
    h = torch.randn(n, batch, 6, dtype=torch.double)
    return (h, torch.randn_like(h)) if kind == "lstm" else h


def flat(state):
    return torch.cat([s.flatten() for s in state]) if isinstance(state, tuple) else state.flatten()


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"L{c['num_layers']}{'bi' if c['bidirectional'] else ''}")
@pytest.mark.parametrize("with_state", [False, True])
def test_scratch_equals_builtin(kind, cfg, with_state):
    builtin, scratch = pair(kind, **cfg)
    x = torch.randn(3, 7, 5, dtype=torch.double)
    n = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    state = random_state(kind, n, 3) if with_state else None
    out_b, st_b = builtin(x, state)
    out_s, st_s = scratch(x, state)
    assert out_s.shape == (3, 7, output_size(builtin)) == out_b.shape
    torch.testing.assert_close(out_s, out_b)
    torch.testing.assert_close(flat(st_s), flat(st_b))

    weights = torch.randn_like(out_b)
    ((out_b * weights).sum() + flat(st_b).sum()).backward()
    ((out_s * weights).sum() + flat(st_s).sum()).backward()
    for layer in range(cfg["num_layers"]):
        for d in range(2 if cfg["bidirectional"] else 1):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            cell = scratch.cells[layer * (2 if cfg["bidirectional"] else 1) + d]
            torch.testing.assert_close(cell.W_x.grad, getattr(builtin, "weight_ih" + sfx).grad.T)
            torch.testing.assert_close(cell.W_h.grad, getattr(builtin, "weight_hh" + sfx).grad.T)
            torch.testing.assert_close(cell.b_x.grad, getattr(builtin, "bias_ih" + sfx).grad)
            torch.testing.assert_close(cell.b_h.grad, getattr(builtin, "bias_hh" + sfx).grad)


def test_relu_rnn_scratch_equals_builtin():
    builtin, scratch = pair("rnn", num_layers=2, nonlinearity="relu")
    x = torch.randn(2, 9, 5, dtype=torch.double)
    torch.testing.assert_close(scratch(x)[0], builtin(x)[0])


@pytest.mark.parametrize("kind", list(CORES))
def test_state_carried_across_chunks_equals_one_pass(kind):
    torch.manual_seed(0)
    core = build_core(kind, 4, 8, num_layers=2).double()
    x = torch.randn(2, 10, 4, dtype=torch.double)
    full, state_full = core(x)
    first, state = core(x[:, :6])
    second, state = core(x[:, 6:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    torch.testing.assert_close(flat(state), flat(state_full))


def sgd_losses(kind, compile, steps=3, vocab=7, hidden=8):
    """Losses of a few SGD steps (one-hot input, carried state, clipping) of a core with a linear head."""
    torch.manual_seed(0)
    core, head = build_core(kind, vocab, hidden, compile=compile), torch.nn.Linear(hidden, vocab)
    params = [*core.parameters(), *head.parameters()]
    opt, g, state, losses = torch.optim.SGD(params, lr=1.0), torch.Generator().manual_seed(1), None, []
    for _ in range(steps):
        x, y = torch.randint(0, vocab, (4, 6), generator=g), torch.randint(0, vocab, (4, 6), generator=g)
        out, state = core(torch.nn.functional.one_hot(x, vocab).float(), state)
        state = detach_state(state)
        loss = torch.nn.functional.cross_entropy(head(out).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def compiled_sgd_losses(kind, mode):
    """sgd_losses under model.compile=mode, with what dynamo captured (its counters) on the way."""
    from torch._dynamo.utils import counters

    counters.clear()
    losses = sgd_losses(kind, mode)
    return losses, {k: dict(v) for k, v in counters.items()}


def test_compile_reduce_overhead_on_cpu_runs_compiled_and_equals_eager():
    """model.compile=reduce-overhead off a GPU: one warning, the core compiled as `default` (dynamo
    captured its graph) and the same losses as eager."""
    with pytest.warns(UserWarning, match="reduce-overhead: CUDA graphs need a CUDA device; on cpu"):
        losses, counters = compiled_sgd_losses("rnn_scratch", "reduce-overhead")
    assert counters["stats"]["unique_graphs"] >= 1
    torch.testing.assert_close(losses, sgd_losses("rnn_scratch", False), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "max-autotune"])
@pytest.mark.parametrize("kind", list(CORES))
def test_compiled_core_losses_equal_eager(kind, mode):
    """model.compile for every core: the same SGD losses as eager; the built-in recurrences are traced
    (allow_rnn: a graph, no graph break) except nn.LSTM on a CPU, kept eager inside the compiled
    function (nothing captured, dynamo's RNN graph break)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inductor's own deprecation warnings
        losses, counters = compiled_sgd_losses(kind, mode)
    assert counters["frames"]["ok"] >= 1  # dynamo ran on the compiled function
    assert counters.get("stats", {}).get("unique_graphs", 0) == (0 if kind == "lstm" else 2)  # state None, then carried
    breaks = list(counters.get("graph_break", {}))
    assert (breaks and all("RNN, GRU, or LSTM" in b for b in breaks)) if kind == "lstm" else not breaks
    torch.testing.assert_close(losses, sgd_losses(kind, False), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_cores_each_get_their_own_dynamo_cache():
    """Nine compiled cores run in one process (a sweep in one process), more than dynamo's recompile
    limit per code object (8): the ninth is still compiled, not silently eager."""
    from torch._dynamo.utils import counters

    x = torch.randn(2, 3, 3)
    for _ in range(8):
        build_core("rnn_scratch", 3, 2, compile=True)(x)
    counters.clear()
    build_core("rnn_scratch", 3, 2, compile=True)(x)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("reverse", [False, True])
def test_written_out_backward_through_time_passes_gradcheck(kind, reverse):
    """The scratch cells' hand-written BPTT against numerical derivatives, initial state included."""
    from rnnlab.models.scratch import _BPTT

    torch.manual_seed(0)
    cell = build_core(kind + "_scratch", 3, 4).double().cells[0]
    xp = torch.randn(5, 2, cell.W_h.shape[1], dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(2, 4, dtype=torch.double, requires_grad=True) if kind == "lstm" else None
    steps = range(4, -1, -1) if reverse else range(5)

    def run(xp, h0, c0, W_h, b_h):
        outputs, h, c = _BPTT.apply(cell, steps, xp, h0, c0, W_h, b_h)
        return (outputs, h) if c is None else (outputs, h, c)

    W_h = cell.W_h.detach().clone().requires_grad_()
    b_h = cell.b_h.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(run, (xp, h0, c0, W_h, b_h))


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_scratch_cores_run_under_mixed_precision(kind):
    """trainer.precision=bf16-mixed: autocast reaches the written-out BPTT; results stay near float32."""
    torch.manual_seed(0)
    core = build_core(kind + "_scratch", 5, 8)
    x = torch.randn(2, 6, 5)
    reference, _ = core(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = core(x)
        out.float().square().sum().backward()
    torch.testing.assert_close(out.float(), reference, atol=5e-2, rtol=5e-2)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in core.parameters())
