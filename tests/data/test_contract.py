"""The data-set contract (rnnlab.data.base), held over every data set of conf/data/: a new file there is
covered by itself. Each is composed as train.py composes it (with its task), built, set up, and read as
the training, evaluation and the task's LightningModule read it."""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class, get_object
from omegaconf import OmegaConf

from conftest import CONF, compose_config
from rnnlab.data.base import INTERFACES, SeriesData, TaskData, TextData, check_data_module, interface_members
from rnnlab.errors import ConfigError
from rnnlab.run.build import build

DATA_SETS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
# Options a data set needs that its file leaves to the user (data=series: the CSV file), by name.
REQUIRED = {"series": lambda tmp: [f"data.path={series_csv(tmp)}", "data.time_column=t"]}
# One more row per text set-up the defaults leave out: a test part (has_test_split).
VARIANTS = [(name, []) for name in DATA_SETS] + [("text", ["data.test_fraction=0.2"])]


def series_csv(tmp: Path) -> Path:
    path = tmp / "series.csv"
    t = torch.arange(120, dtype=torch.float64)
    rows = [f"{i},{torch.sin(0.3 * t[i]).item() + 0.01 * i:.6f},{torch.cos(0.2 * t[i]).item():.6f}" for i in range(120)]
    path.write_text("t,a,b\n" + "\n".join(rows) + "\n")
    return path


def data_node(name: str, overrides: list[str]):
    """conf/data/<name>.yaml as Hydra composes it (its defaults list included), under `data`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(f"data/{name}", overrides=overrides).data


@functools.lru_cache(maxsize=None)
def task_config(task: str, tmp: Path):
    """The train config of `task` (composed once per task: composing is most of a row's time)."""
    return compose_config(tmp / "run", f"task={task}", tiny=False)


def composed(name: str, tmp: Path, *extra: str):
    """The train config of the task that data=<name> names (its interface's `task`), with that data set."""
    data = data_node(name, [*REQUIRED.get(name, lambda _: [])(tmp), *extra])
    cfg = task_config(get_class(data._target_).task, tmp).copy()
    cfg.data = data
    if "cache_dir" in cfg.data:
        cfg.data.cache_dir = None  # nothing written outside tmp
    if "max_tokens" in cfg.data:  # the tiny text set-up of conftest.TINY
        cfg.data.max_tokens, cfg.data.batch_size, cfg.data.num_steps, cfg.data.val_batch_size = 4000, 8, 10, 4
    return cfg


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("contract")


def first(loader):
    return next(iter(loader))


def assert_shifted_pair(batch, rows: int, steps: int):
    """A training batch: (x, y) of `rows` windows of `steps`, y the window shifted by one."""
    x, y = batch
    assert x.shape[:2] == y.shape[:2] == (rows, steps) and x.dtype == y.dtype
    torch.testing.assert_close(y[:, :-1], x[:, 1:])


def text_contract(dm: TextData) -> None:
    vocab = dm.module_kwargs()["vocab"]
    assert list(dm.vocab.idx_to_token) == vocab and dm.token in ("char", "word", "byte")
    for tokens in (dm.train_tokens, dm.val_tokens):
        assert tokens.ndim == 1 and not tokens.is_floating_point()
        assert 0 <= int(tokens.min()) <= int(tokens.max()) < len(vocab)
    assert isinstance(dm.sample_prefix, str) and dm.sample_prefix
    x, y = first(dm.train_dataloader())
    assert not x.is_floating_point() and int(x.max()) < len(vocab)
    assert_shifted_pair((x, y), dm.batch_size, dm.num_steps)
    held_out = [first(dm.val_dataloader())] + ([first(dm.test_dataloader())] if dm.has_test_split else [])
    for x, y in held_out:  # the held-out streams: (x, y), y = -100 past the stream's end
        assert x.shape == y.shape and not x.is_floating_point() and bool(((y >= 0) | (y == -100)).all())
    if not dm.has_test_split:
        with pytest.raises(ConfigError, match="test_fraction"):
            dm.test_dataloader()


def series_contract(dm: SeriesData) -> None:
    spec = dm.spec()
    assert dm.module_kwargs()["series"] == asdict(spec)
    columns = len(spec.columns)
    x, y = first(dm.train_dataloader())
    assert x.dtype == torch.float32 and x.shape[2] == columns
    assert_shifted_pair((x, y), x.shape[0], dm.num_steps)
    assert dm.has_test_split
    for batch in (first(dm.val_dataloader()), first(dm.test_dataloader())):
        levels = batch["levels"]
        assert levels.dtype == torch.float32 and levels.shape[1] == columns
        assert len(dm.time_axis()) == len(levels)
        assert spec.train_end < spec.val[2] <= spec.test[2] == len(levels)


@pytest.mark.parametrize("name, extra", VARIANTS, ids=lambda v: v if isinstance(v, str) else "+".join(v) or "-")
def test_data_set_honours_its_task_interface(name, extra, tmp):
    cfg = composed(name, tmp, *extra)
    cls = get_class(cfg.data._target_)
    interface = INTERFACES[cls.task]
    assert issubclass(cls, interface) and not cls.__abstractmethods__
    check_data_module(cls, cls.task)
    dm = build(cfg.data, "data")
    dm.setup("fit")
    check_data_module(dm, cls.task)
    line = dm.describe()
    assert isinstance(line, str) and line and "\n" not in line
    (text_contract if cls.task == "lm" else series_contract)(dm)
    # What only the data knows reaches the task's LightningModule as its keyword arguments, and builds it.
    kwargs = dm.module_kwargs()
    module_cls = get_object(cfg.module._target_)
    assert set(kwargs) <= set(inspect.signature(module_cls).parameters)
    assert isinstance(build(cfg.module, "module", **kwargs), L.LightningModule)
    for other in set(INTERFACES) - {cls.task}:  # and it is refused by every other task, in one line
        with pytest.raises(ConfigError, match=rf"^data\._target_=\S+ is invalid: it is a data set of task={cls.task}, "
                                              rf"not of task={other} \(use task={cls.task}"):
            check_data_module(dm, other)


def test_every_interface_names_a_task_with_a_config():
    assert set(INTERFACES) == {p.stem for p in (CONF / "task").glob("*.yaml")}
    for task, interface in INTERFACES.items():
        assert interface.task == task and issubclass(interface, TaskData)
        assert {"module_kwargs", "describe", "train_dataloader", "val_dataloader"} <= set(interface_members(interface))
        assert isinstance(interface.has_test_split, property)
        assert OmegaConf.load(CONF / "task" / f"{task}.yaml").task.name == task


class Plain(L.LightningDataModule):
    """docs/design.md's recipe before the interface: a LightningDataModule with loaders and nothing else."""

    def train_dataloader(self):
        return [torch.zeros(1)]


class Unfinished(TextData):
    """Derives from the interface but leaves out `sample_prefix` and `has_test_split`."""

    def module_kwargs(self):
        return {}

    def describe(self):
        return "unfinished"

    def train_dataloader(self):
        return []

    def val_dataloader(self):
        return []


def test_a_data_module_without_the_interface_is_refused_in_one_line_naming_what_it_lacks():
    with pytest.raises(ConfigError) as info:
        check_data_module(Plain(), "lm")
    assert str(info.value) == (f"data._target_={__name__}.Plain is invalid: a data set of task=lm must derive from "
                               "rnnlab.data.base.TextData, its interface; it lacks describe, has_test_split, "
                               "module_kwargs, sample_prefix")
    with pytest.raises(ConfigError, match=r"derive from rnnlab\.data\.base\.SeriesData, its interface; it lacks "
                                          r"describe, module_kwargs, spec, time_axis$"):
        check_data_module(Plain, "forecast")
    check_data_module(Plain, "a task without an interface")  # nothing to hold it to


def test_a_data_set_that_leaves_out_a_member_cannot_be_built_and_is_named_before():
    with pytest.raises(ConfigError, match=r"^data\._target_=\S+Unfinished is invalid: it does not implement "
                                          r"has_test_split, sample_prefix of rnnlab\.data\.base\.TextData$"):
        check_data_module(Unfinished, "lm")
    with pytest.raises(TypeError, match="has_test_split"):
        Unfinished()
