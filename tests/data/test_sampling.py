"""Samplers against the book's generators (d2l 9.3) on small sequences like range(35)."""


import pytest
import torch

from rnnlab.data.sampling import RandomSampler, SequentialSampler, WindowDataset, eval_stream_batches, make_sampler
from rnnlab.errors import ConfigError


def book_sequential(corpus, batch_size, num_steps, offset):
    """d2l's seq_data_iter_sequential with its random offset given."""
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = torch.tensor(corpus[offset: offset + num_tokens]).reshape(batch_size, -1)
    Ys = torch.tensor(corpus[offset + 1: offset + 1 + num_tokens]).reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    return [(Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]) for i in range(0, num_steps * num_batches, num_steps)]


def book_random_windows(corpus, batch_size, num_steps, offset):
    """The set of windows d2l's seq_data_iter_random may draw at this offset, and how many it draws."""
    corpus = corpus[offset:]
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = list(range(0, num_subseqs * num_steps, num_steps))
    return {tuple(corpus[s: s + num_steps]) for s in starts}, (num_subseqs // batch_size) * batch_size


def batches(sampler, corpus, offset=None):
    data = WindowDataset(torch.tensor(corpus), sampler.num_steps)
    starts = sampler.starts(offset) if offset is not None else list(sampler)
    return [data[s] for s in starts]


CORPUS = list(range(35))


@pytest.mark.parametrize("batch_size, num_steps", [(2, 5), (3, 4), (1, 7)])
def test_sequential_equals_book_at_every_offset(batch_size, num_steps):
    sampler = SequentialSampler(len(CORPUS), batch_size, num_steps)
    for offset in range(num_steps + 1):
        ours, book = batches(sampler, CORPUS, offset), book_sequential(CORPUS, batch_size, num_steps, offset)
        assert len(ours) == sampler.num_batches() <= len(book) <= len(ours) + 1
        for (x, y), (bx, by) in zip(ours, book):
            assert torch.equal(x, bx) and torch.equal(y, by)


def test_sequential_rows_continue_across_batches():
    sampler = SequentialSampler(len(CORPUS), 2, 5, seed=3)
    out = batches(sampler, CORPUS)
    for (x0, _), (x1, _) in zip(out, out[1:]):
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # row i of batch k+1 continues row i of batch k
    for x, y in out:
        assert x.shape == (2, 5) and torch.equal(y, x + 1)


@pytest.mark.parametrize("batch_size, num_steps", [(2, 5), (3, 4)])
def test_random_draws_the_books_windows_without_overlap(batch_size, num_steps):
    sampler = RandomSampler(len(CORPUS), batch_size, num_steps, seed=1)
    for offset in range(num_steps):
        allowed, book_count = book_random_windows(CORPUS, batch_size, num_steps, offset)
        out = batches(sampler, CORPUS, offset)
        windows = [tuple(row.tolist()) for x, _ in out for row in x]
        assert len(windows) == len(set(windows)) == sampler.num_batches() * batch_size
        assert book_count - batch_size <= len(windows) <= book_count
        assert set(windows) <= allowed
        for x, y in out:
            assert x.shape == (batch_size, num_steps) and torch.equal(y, x + 1)


def test_random_order_is_shuffled_and_offsets_vary_by_epoch():
    sampler = RandomSampler(1000, 4, 5, seed=0)
    firsts, offsets = set(), set()
    for epoch in range(10):
        sampler.set_epoch(epoch)
        starts = torch.cat(list(sampler))
        offsets.add(int(starts[0]) % 5)
        firsts.add(int(starts[0]))
        assert not torch.equal(starts, starts.sort().values)  # not in corpus order
    assert len(offsets) > 1 and len(firsts) > 5


@pytest.mark.parametrize("cls", [RandomSampler, SequentialSampler])
def test_reproducible_under_seed_and_fixed_length(cls):
    a, b, c = cls(500, 4, 7, seed=5), cls(500, 4, 7, seed=5), cls(500, 4, 7, seed=6)
    epochs = []
    for epoch in range(4):
        for s in (a, b, c):
            s.set_epoch(epoch)
        ea, eb, ec = list(a), list(b), list(c)
        assert len(ea) == len(a) == len(ec)
        assert all(torch.equal(x, y) for x, y in zip(ea, eb))
        epochs.append(torch.stack(ea))
        assert not all(torch.equal(x, y) for x, y in zip(ea, ec))
    assert not all(torch.equal(epochs[0], e) for e in epochs[1:])


@pytest.mark.parametrize("cls", [RandomSampler, SequentialSampler])
def test_processes_take_contiguous_blocks_of_the_global_batch(cls):
    whole = cls(400, 6, 5, seed=2)
    parts = [cls(400, 3, 5, seed=2, rank=r, world_size=2) for r in range(2)]
    for s in (whole, *parts):
        s.set_epoch(3)
    merged = [torch.cat(rows) for rows in zip(*(list(p) for p in parts))]
    assert len(merged) == len(whole)
    assert all(torch.equal(m, w) for m, w in zip(merged, whole))


def test_too_large_batch_names_the_options():
    with pytest.raises(ConfigError, match="data.batch_size=8 x data.num_steps=10 is too large"):
        make_sampler("sequential", 35, 8, 10)


def test_eval_stream_predicts_every_token_once():
    stream = torch.arange(100, 137)
    out = eval_stream_batches(stream, batch_size=4, num_steps=4)
    xs, ys = torch.cat([x for x, _ in out], 1), torch.cat([y for _, y in out], 1)
    mask = ys != -100
    assert sorted(ys[mask].tolist()) == stream[1:].tolist()
    assert torch.equal(ys[mask], xs[mask] + 1)
    assert all(x.shape[1] <= 4 for x, _ in out)


def test_window_loader_gathers_on_the_trainers_device():
    """Corpus and each epoch's starts are placed once on the training device; batches are windows of it."""
    import lightning as L

    from rnnlab.data.sampling import window_loader

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False)
    corpus = torch.arange(100)
    loader = window_loader(corpus, "sequential", batch_size=3, num_steps=5, trainer=trainer)
    assert loader.sampler.device == trainer.strategy.root_device
    batches = list(loader)
    assert len(batches) == len(loader.sampler) and batches[0][0].shape == (3, 5)
    for x, y in batches:
        assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)


def test_overlapping_sampler_resumes_mid_epoch_with_the_rest_of_its_order():
    from rnnlab.data.sampling import OverlappingSampler

    whole = [b.tolist() for b in OverlappingSampler(50, batch_size=4, num_steps=5, seed=3)]
    assert len(whole) == 12 and sorted(sum(whole, [])) == list(range(45)) and len(whole[-1]) == 1
    resumed = OverlappingSampler(50, batch_size=4, num_steps=5, seed=3)
    resumed.load_state_dict({"epoch": 0, "batches_done": 5})
    assert [b.tolist() for b in resumed] == whole[5:]
    resumed.set_epoch(1)
    assert [b.tolist() for b in resumed] != whole  # another epoch, another order
