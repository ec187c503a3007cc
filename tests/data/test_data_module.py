"""The text DataModule on any text: narrow ids widened per batch, a lazy validation stream, Chinese
trained and generated, Zipf statistics of it, and one-line errors for the new options."""


import lightning as L
import pytest
import torch

from rnnlab.cli import zipf
from rnnlab.data import TextDataModule
from rnnlab.data.sampling import EvalStream
from rnnlab.errors import ConfigError
from rnnlab.models import LanguageModel

CHINESE = [
    "时间旅行者正在向我们讲解一个深奥的问题。",
    "他的灰色眼睛闪闪发光，平时苍白的脸也红润起来。",
    "炉火熊熊燃烧，白炽灯的柔和光芒映照在我们的酒杯里。",
    "我们的椅子是他设计的，它们拥抱着我们，而不是被我们坐着。",
]


@pytest.fixture
def chinese(tmp_path):
    p = tmp_path / "zh.txt"
    p.write_text("\n".join(CHINESE * 12) + "\n", encoding="utf-8")
    return p


def test_ids_stay_narrow_and_batches_are_widened(chinese):
    dm = TextDataModule(path=str(chinese), preprocess="none", batch_size=4, num_steps=8, val_batch_size=3)
    dm.setup("fit")
    assert dm.train_tokens.dtype == torch.uint8 and dm.vocab_size < 256
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == y.dtype == torch.long and x.shape == (4, 8)
    val = dm.val_dataloader().dataset
    assert isinstance(val, EvalStream)  # batches are built one at a time
    xs, ys = zip(*val)
    targets = torch.cat(ys, 1)
    assert torch.equal(targets[targets != -100].sort().values, dm.val_tokens[1:].long().sort().values)


def test_a_model_trained_on_chinese_generates_chinese(chinese):
    torch.manual_seed(0)
    dm = TextDataModule(path=str(chinese), preprocess="none", batch_size=4, num_steps=10, val_batch_size=2)
    dm.setup("fit")
    model = LanguageModel(core={"kind": "gru", "hidden_size": 32},
                          optimizer={"_target_": "torch.optim.Adam", "lr": 0.01}, **dm.module_kwargs())
    L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, datamodule=dm)
    assert model.hparams.preprocess == "none"
    text = model.generate("时间", 12)
    new = text[len("时间"):]
    assert len(new) == 12 and sum("\u4e00" <= ch <= "\u9fff" for ch in new) >= 8
    assert set(new) <= set(dm.vocab.idx_to_token[1:])


def test_zipf_statistics_of_chinese(chinese, tmp_path, capsys):
    out = tmp_path / "zipf"
    args = [f"data.path={chinese}", "data.preprocess=none", "data.batch_size=4", "data.num_steps=8", "--out", str(out)]
    assert zipf.main(args) == 0
    report = (out / "top_tokens.txt").read_text(encoding="utf-8")
    assert "'我': 60" in report and (out / "zipf.png").is_file()


@pytest.mark.parametrize("option, value, message", [
    ("preprocess", "upper", "data.preprocess='upper' is invalid: allowed values are book, lower, none"),
    ("token", "bpe", "data.token='bpe' is invalid: allowed values are char, word, byte"),
    ("max_vocab", 1, r"data.max_vocab=1 is invalid: must be an integer >= 2 \(<unk> and one token\), or null"),
    ("unk", "no", "data.unk='no' is invalid: must be true or false"),
])
def test_new_options_are_checked(option, value, message, tmp_path):
    from conftest import compose_config
    from rnnlab.schema import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose_config(tmp_path, f"data.{option}={value}"))


def test_byte_tokens_have_a_fixed_vocabulary(chinese):
    with pytest.raises(ConfigError, match="^token='byte' is invalid: byte has a fixed vocabulary"):
        TextDataModule(token="byte", max_vocab=100)
    dm = TextDataModule(path=str(chinese), token="byte", preprocess="none", batch_size=4, num_steps=8)
    dm.setup("fit")
    assert dm.vocab_size == 256 and dm.module_kwargs()["token"] == "byte"
    assert bytes(torch.cat([dm.train_tokens, dm.val_tokens]).tolist()) == chinese.read_bytes()


def test_checkpoints_from_before_the_option_process_prefixes_as_the_book(tmp_path):
    model = LanguageModel(core={"kind": "gru", "hidden_size": 4}, vocab=["<unk>", " ", "t", "h", "e"],
                          preprocess="lower")
    hparams = {k: v for k, v in model.hparams.items() if k != "preprocess"}  # an older checkpoint
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": L.__version__}, tmp_path / "old.ckpt")
    old = LanguageModel.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert old.preprocess == "book" and old.prefix_indices("The, ") == [2, 3, 4, 1]
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": L.__version__}, tmp_path / "new.ckpt")
    new = LanguageModel.load_from_checkpoint(tmp_path / "new.ckpt", weights_only=True)
    assert new.preprocess == "lower" and new.prefix_indices("The, ") == [2, 3, 4, 0, 1]
    assert old.sample_prefix == new.sample_prefix == "time traveller"  # no data.sample_prefix: the book's


@pytest.mark.parametrize("options, prefix", [
    ({}, "time traveller"),                                          # the book's corpus and preprocessing
    ({"token": "word"}, "time traveller"),
    ({"preprocess": "none"}, "The Time Machine,"),                   # the bundled text, as it is
    ({"preprocess": "lower", "token": "word"}, "the time"),
    ({"zh": True, "preprocess": "none"}, "时间旅行者正在向我们"),      # another script: its own characters
    ({"zh": True, "preprocess": "none", "token": "byte"}, "时间旅行者正在向我们"),
    ({"zh": True, "preprocess": "none", "max_vocab": 20}, "时间旅行者"),  # up to the first <unk>
    ({"zh": True, "preprocess": "none", "sample_prefix": "炉火"}, "炉火"),  # given: it wins
    ({"sample_prefix": "the time"}, "the time"),
])
def test_sample_prefix_is_the_books_or_the_corpus_own_opening(chinese, options, prefix):
    options = dict(options)
    if options.pop("zh", False):
        options["path"] = str(chinese)
    dm = TextDataModule(batch_size=4, num_steps=8, val_batch_size=2, max_tokens=3000, **options)
    dm.setup("fit")
    assert dm.sample_prefix == prefix and dm.module_kwargs()["sample_prefix"] == prefix
    model = LanguageModel(core={"kind": "gru", "hidden_size": 4}, **dm.module_kwargs())
    assert model.sample_prefix == prefix and model.unknown_prefix_tokens(prefix) == []
    if "sample_prefix" not in options and "max_vocab" not in options and "path" in options:
        # the corpus's first tokens, processed and tokenized as a prefix is
        ids = model.prefix_indices(prefix)
        assert ids == dm.train_tokens[:len(ids)].tolist()


def test_a_prefix_outside_the_vocabulary_is_named_in_one_warning(chinese, caplog):
    dm = TextDataModule(path=str(chinese), preprocess="none", batch_size=4, num_steps=8, val_batch_size=2)
    dm.setup("fit")
    model = LanguageModel(core={"kind": "gru", "hidden_size": 4}, **dm.module_kwargs())
    with caplog.at_level("WARNING", logger="rnnlab.models.language_model"):
        model.generate(None, 3)  # the corpus's own opening: nothing to say
        assert caplog.records == []
        for _ in range(2):
            assert model.generate("time 时间", 3).startswith("time 时间")
    assert [r.getMessage() for r in caplog.records] == [  # once per prefix
        "sample prefix 'time 时间' has characters outside the vocabulary, read as <unk>: 't', 'i', 'm', 'e', ' '; "
        "give a prefix in the corpus's own text"]
