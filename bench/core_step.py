"""Forward + backward of one batch through each core alone (one-hot input, head and cross-entropy,
no optimizer): built-in, scratch and the book's loop side by side, best of 3 timings of 30 steps.

    python bench/core_step.py [--device cuda] [--hidden 256]
Shows how close each kind comes to the built-in (cuDNN or oneDNN) kernels, and how much of a
step is the matmul arithmetic every kind shares: the "matmul floor" times those matmuls alone,
so book-style/floor bounds what any implementation of the same float32 arithmetic can gain over
the book's loop on this machine. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_style import BookStyleRNN  # noqa: E402

from rnnlab.models import build_core  # noqa: E402


def best_ms(step, device, n=30, repeats=3) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / n * 1e3)
    return min(times)


def matmul_floor(gates: int, vocab: int, hidden: int, batch: int, steps: int, device: str):
    """The matmuls every implementation of the cell must do, alone and back to back: per step the
    recurrent one forward and backward (sequential: each needs the previous step's result), then
    dW_h over all steps and the head's three. Left out, as an implementation may avoid them: the
    input projection and its weight gradient (a row gather and a scatter for one-hot input)."""
    g = torch.Generator(device=device).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, device=device)

    W_h, W_q = rand(hidden, gates * hidden) / hidden**0.5, rand(hidden, vocab)  # scaled: values stay near 1
    h, d_a = rand(batch, hidden), rand(batch, gates * hidden)
    h_all, d_a_all, d_y = rand(steps * batch, hidden), rand(steps * batch, gates * hidden), rand(steps * batch, vocab)

    def matmuls():
        x = h
        for _ in range(steps):
            x = (x @ W_h)[:, :hidden]
        h_all @ W_q
        for _ in range(steps):
            d_a @ W_h.T
        h_all.T @ d_a_all, h_all.T @ d_y, d_y @ W_q.T

    return best_ms(matmuls, device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=35)
    args = parser.parse_args(argv)
    dev, V, H, B, T = args.device, 28, args.hidden, args.batch_size, args.num_steps
    torch.manual_seed(0)
    x, y = torch.randint(0, V, (B, T), device=dev), torch.randint(0, V, (B, T), device=dev)
    print(f"device={dev} batch={B} num_steps={T} hidden={H}: ms per forward + backward")
    print("| cell | built-in | scratch | book-style | book-style/scratch | matmul floor | book-style/floor |\n"
          "|---|---|---|---|---|---|---|")
    for cell in ("rnn", "gru", "lstm"):
        ms = {}
        for kind in (cell, cell + "_scratch"):
            core, head = build_core(kind, V, H).to(dev), torch.nn.Linear(H, V).to(dev)

            def step(core=core, head=head):
                out, _ = core(F.one_hot(x, V).float())
                F.cross_entropy(head(out).flatten(0, 1), y.flatten()).backward()

            ms[kind] = best_ms(step, dev)
        net = BookStyleRNN(cell, V, H).to(dev)

        def book_step():
            out, _ = net(x, net.begin_state(B, dev))
            F.cross_entropy(out, y.T.reshape(-1)).backward()

        book = best_ms(book_step, dev)
        floor = matmul_floor({"rnn": 1, "gru": 3, "lstm": 4}[cell], V, H, B, T, dev)
        print(f"| {cell} | {ms[cell]:.1f} | {ms[cell + '_scratch']:.1f} | {book:.1f} "
              f"| {book / ms[cell + '_scratch']:.2f} | {floor:.1f} | {book / floor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
