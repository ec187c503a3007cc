"""The book's chapter loop, as a standalone script: d2l's `train_ch8` / `train_epoch_ch8` (9.5 / 9.6,
d2l/torch.py of d2l-ai/d2l-zh), for the built-in cores (the concise `RNNModel` around nn.RNN/GRU/LSTM)
and for the scratch cores (bench/book_style.py's BookStyleRNN, the book's per-gate, per-step code).

    python bench/book_loop.py --core rnn|gru|lstm|rnn_scratch|gru_scratch|lstm_scratch --epochs 10

What the book does, step for step: one-hot input, the state carried across batches and detached in
place (sequential partitioning), the mean cross-entropy, `grad_clipping` (the norm computed and compared
with theta on the host every step), SGD, and the perplexity accumulated on the host every step
(`metric.add(l * y.numel(), y.numel())`); `predict_ch8('time traveller')` every 10 epochs and at the end.
The corpus is The Time Machine with the book's preprocessing (`read_time_machine`, char tokens, `Vocab`);
it trains on the tokens the project trains on (all but the held-out last 10%: data.val_fraction=0.1),
so that `bench/end_to_end.py` compares the same work. Only torch is imported, as a reader's own script
would; the book's Animator (matplotlib) is left out. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import math
import random
import re
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_style import BookStyleRNN  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "src" / "rnnlab" / "data" / "timemachine.txt"
# float(l * y.numel()) of a tensor that requires grad, as the book's Accumulator does: torch warns, the book reads on.
warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
CORES = ("rnn", "gru", "lstm", "rnn_scratch", "gru_scratch", "lstm_scratch")


# d2l 9.2: text preprocessing ----------------------------------------------------------------------
def read_time_machine():
    with open(CORPUS) as f:
        lines = f.readlines()
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines]


def tokenize(lines, token="char"):
    return [list(line) for line in lines] if token == "char" else [line.split() for line in lines]


class Vocab:
    def __init__(self, tokens):
        counter = collections.Counter(token for line in tokens for token in line)
        self._token_freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token = ["<unk>"]
        self.token_to_idx = {"<unk>": 0}
        for token, _ in self._token_freqs:
            if token not in self.token_to_idx:
                self.idx_to_token.append(token)
                self.token_to_idx[token] = len(self.idx_to_token) - 1

    def __len__(self):
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, 0)
        return [self.__getitem__(token) for token in tokens]


def load_corpus_time_machine(val_fraction=0.1):
    tokens = tokenize(read_time_machine(), "char")
    vocab = Vocab(tokens)
    corpus = [vocab[token] for line in tokens for token in line]
    return corpus[:len(corpus) - int(round(len(corpus) * val_fraction))], vocab


# d2l 9.3: sequential partitioning -----------------------------------------------------------------
def seq_data_iter_sequential(corpus, batch_size, num_steps):
    offset = random.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = torch.tensor(corpus[offset: offset + num_tokens])
    Ys = torch.tensor(corpus[offset + 1: offset + 1 + num_tokens])
    Xs, Ys = Xs.reshape(batch_size, -1), Ys.reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    for i in range(0, num_steps * num_batches, num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


# d2l 9.6: the concise model -----------------------------------------------------------------------
class RNNModel(nn.Module):
    def __init__(self, rnn_layer, vocab_size):
        super().__init__()
        self.rnn, self.vocab_size, self.num_hiddens = rnn_layer, vocab_size, rnn_layer.hidden_size
        self.linear = nn.Linear(self.num_hiddens, self.vocab_size)

    def forward(self, inputs, state):
        X = F.one_hot(inputs.T.long(), self.vocab_size).to(torch.float32)
        Y, state = self.rnn(X, state)
        return self.linear(Y.reshape((-1, Y.shape[-1]))), state

    def begin_state(self, device, batch_size=1):
        shape = (self.rnn.num_layers, batch_size, self.num_hiddens)
        if not isinstance(self.rnn, nn.LSTM):
            return torch.zeros(shape, device=device)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)


class BookScratch(BookStyleRNN):
    """BookStyleRNN with the book's `begin_state(batch_size, device)` keywords."""

    def begin_state(self, batch_size, device):
        return super().begin_state(batch_size, device)


# d2l 9.5: prediction, clipping, training ----------------------------------------------------------
def predict_ch8(prefix, num_preds, net, vocab, device):
    state = net.begin_state(batch_size=1, device=device)
    outputs = [vocab[prefix[0]]]

    def get_input():
        return torch.tensor([outputs[-1]], device=device).reshape((1, 1))

    for y in prefix[1:]:
        _, state = net(get_input(), state)
        outputs.append(vocab[y])
    for _ in range(num_preds):
        y, state = net(get_input(), state)
        outputs.append(int(y.argmax(dim=1).reshape(1)))
    return "".join([vocab.idx_to_token[i] for i in outputs])


def grad_clipping(net, theta):
    params = [p for p in net.parameters() if p.requires_grad]
    norm = torch.sqrt(sum(torch.sum((p.grad ** 2)) for p in params))
    if norm > theta:
        for param in params:
            param.grad[:] *= theta / norm


def train_epoch_ch8(net, train_iter, loss, updater, device):
    state, t0 = None, time.time()
    metric = [0.0, 0.0]  # d2l.Accumulator(2): sum of losses, number of tokens
    for X, Y in train_iter:
        if state is None:
            state = net.begin_state(batch_size=X.shape[0], device=device)
        elif not isinstance(state, tuple):
            state.detach_()
        else:
            for s in state:
                s.detach_()
        y = Y.T.reshape(-1)
        X, y = X.to(device), y.to(device)
        y_hat, state = net(X, state)
        batch_loss = loss(y_hat, y.long()).mean()
        updater.zero_grad()
        batch_loss.backward()
        grad_clipping(net, 1)
        updater.step()
        metric = [a + float(b) for a, b in zip(metric, (batch_loss * y.numel(), y.numel()))]
    return math.exp(metric[0] / metric[1]), metric[1] / (time.time() - t0), metric[1]


def train_ch8(net, corpus, vocab, lr, num_epochs, device, batch_size, num_steps):
    loss = nn.CrossEntropyLoss()
    updater = torch.optim.SGD(net.parameters(), lr)

    def predict(prefix):
        return predict_ch8(prefix, 50, net, vocab, device)

    tokens = 0
    for epoch in range(num_epochs):
        ppl, speed, n = train_epoch_ch8(net, seq_data_iter_sequential(corpus, batch_size, num_steps), loss,
                                        updater, device)
        tokens += n
        if (epoch + 1) % 10 == 0:
            print(predict("time traveller"))
    print(f"perplexity {ppl:.1f}, {speed:.1f} tokens/sec on {device}")
    print(predict("time traveller"))
    print(predict("traveller"))
    print(f"tokens {int(tokens)}")  # read by bench/end_to_end.py


def build(core, vocab_size, hidden):
    if core.endswith("_scratch"):
        return BookScratch(core.split("_")[0], vocab_size, hidden)
    layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[core](vocab_size, hidden)
    return RNNModel(layer, vocab_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", choices=CORES, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=35)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush-denormal", action="store_true",
                        help="torch.set_flush_denormal(True), as train.py's flush_denormal (not in the book)")
    args = parser.parse_args(argv)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    corpus, vocab = load_corpus_time_machine()
    net = build(args.core, len(vocab), args.hidden).to(device)
    train_ch8(net, corpus, vocab, args.lr, args.epochs, device, args.batch_size, args.num_steps)


if __name__ == "__main__":
    main()
