"""The data-set interfaces: what a task's training, evaluation and tools read from its data module.

A data set is a LightningDataModule that derives from the interface of its task, `TextData` (task
`lm`) or `SeriesData` (task `forecast`), and so declares every member the rest of rnnlab uses;
nothing asks a data module with getattr what it offers. A class that leaves an abstract member out
cannot be built (Python's TypeError); `check_data_module` says the same in one line before anything
is built, and refuses a data module of another task or one that does not derive from the interface.
tests/data/test_contract.py holds every data set of conf/data/ to its interface.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar

import lightning as L
from torch import Tensor
from torch.utils.data import DataLoader

from rnnlab.errors import ConfigError


class TaskData(L.LightningDataModule, metaclass=ABCMeta):
    """What every data set offers, whatever its task.

    After `setup("fit")`: `module_kwargs()` (what only the data knows, passed to the task's
    LightningModule as keyword arguments), `describe()` (the run log's `data:` line), the training and
    validation loaders, and the test loader exactly when `has_test_split`.
    """

    task: ClassVar[str]  # the task (conf/task/<task>.yaml, task.name) the data set serves

    @abstractmethod
    def module_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the task's LightningModule that only the data knows (a vocabulary, a series' spec)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the run log: what was read, the parts' sizes, the batches."""

    @property
    @abstractmethod
    def has_test_split(self) -> bool:
        """True when `test_dataloader` serves a test part (the evaluation's `test` step and eval.py read it)."""

    @abstractmethod
    def train_dataloader(self) -> DataLoader: ...

    @abstractmethod
    def val_dataloader(self) -> DataLoader: ...


class TextData(TaskData):
    """A token stream for language modelling (task=lm, rnnlab.models.LanguageModel).

    After `setup("fit")`: `vocab` (rnnlab.data.text.Vocab), `token` (char | word | byte), the id streams
    `train_tokens` and `val_tokens` (1-D integer tensors: dynamic evaluation, ensembles and rnnlab-zipf
    read them), and `sample_prefix`. `module_kwargs()` gives the LanguageModel `vocab` (its tokens in index
    order) and `token`, `preprocess`, `sampling`, `sample_prefix`. Training batches are pairs (x, y) of
    (batch, num_steps) ids with y = x shifted by one; validation and test batches the same, y = -100
    where the stream has ended (not scored).
    """

    task = "lm"
    vocab: Any
    token: str
    train_tokens: Tensor
    val_tokens: Tensor

    @property
    @abstractmethod
    def sample_prefix(self) -> str:
        """The text generated samples continue unless a prefix is given."""


class SeriesData(TaskData):
    """A real-valued series of C columns for forecasting (task=forecast, ForecastModel).

    `spec()` describes the series as plain data (rnnlab.data.series.SeriesSpec: columns, targets, scaling,
    the parts scored), `module_kwargs()` gives it to the ForecastModel as `series` (with the data options it
    reads), and `time_axis()` is the x values of the figures. Training batches are pairs (x, y) of
    (batch, num_steps, C) model-space windows; validation and test batches are `{"levels": (T, C)}`, the
    whole observed series in original units. Every series has a test part (the spec's `test`).
    rnnlab.data.series.ForecastData implements all of it from `levels` and the parts.
    """

    task = "forecast"

    @abstractmethod
    def spec(self) -> Any:
        """The series' SeriesSpec."""

    @abstractmethod
    def time_axis(self) -> Any:
        """x values of the figures (dates or numbers), one per row."""

    @property
    def has_test_split(self) -> bool:
        return True

    @abstractmethod
    def test_dataloader(self) -> DataLoader: ...


INTERFACES: dict[str, type[TaskData]] = {cls.task: cls for cls in (TextData, SeriesData)}


def interface_members(interface: type[TaskData]) -> list[str]:
    """The members a data set of `interface` must implement (its abstract ones), in a stable order."""
    return sorted(interface.__abstractmethods__)


def check_data_module(data: Any, task: str, option: str = "data._target_") -> None:
    """Refuse in one line (ConfigError) a data module, or data module class, that does not implement the
    interface of `task`: one of another task, one that does not derive from the interface (naming the
    members it lacks), or one that leaves abstract members out. A task without an interface passes."""
    interface = INTERFACES.get(task)
    if interface is None:
        return
    cls = data if isinstance(data, type) else type(data)
    name = f"{cls.__module__}.{cls.__qualname__}"
    wanted = f"{interface.__module__}.{interface.__qualname__}"
    other = getattr(cls, "task", None) if isinstance(cls, type) and issubclass(cls, TaskData) else None
    if other is not None and other != task:
        raise ConfigError(f"{option}={name} is invalid: it is a data set of task={other}, not of task={task} "
                          f"(use task={other}, or a data set deriving from {wanted})")
    if not issubclass(cls, interface):
        missing = [m for m in interface_members(interface) if not hasattr(cls, m)]
        lacks = f"; it lacks {', '.join(missing)}" if missing else ""
        raise ConfigError(f"{option}={name} is invalid: a data set of task={task} must derive from {wanted}, "
                          f"its interface{lacks}")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ConfigError(f"{option}={name} is invalid: it does not implement {', '.join(missing)} of {wanted}")
