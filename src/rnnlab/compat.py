"""The library internals rnnlab cannot do without, in one place (Lightning 2.6, torch 2.13).

Everything else uses public APIs, except rnnlab.dashboard.logger.RunLogger's use of the state it inherits from
TensorBoardLogger (`_experiment`, `_kwargs`: a subclass's own attributes, canaried in tests/test_compat.py too).
Each name here says what it reaches and what the public API lacks
(measured); tests/test_compat.py fails if the library changes under any of them. Lightning and torch
are imported inside the functions: the run-directory guard reads RANK_VARIABLES without them.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
import typing
from contextlib import AbstractContextManager
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder
from typing import Callable

# Lightning ---------------------------------------------------------------------------------------------

# The environment variables Lightning reads a process's rank from, in its order (the constant tuple of the
# private lightning.fabric.utilities.rank_zero._get_rank). Public is only the result, rank_zero_only.rank,
# which needs Lightning imported: 4-5 s on 2 CPU cores for a run the guard refuses in about 1 s without.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

# The logger of Lightning's SIGTERM handler (_SignalConnector._sigterm_notifier_fn logs "Received SIGTERM:
# 15" whatever arrived): rnnlab.callbacks renames the signal in that line when it forwards a SIGINT.
SIGNAL_LOG = "lightning.pytorch.trainer.connectors.signal_connector"


def precision_choices() -> tuple:
    """Every value Trainer(precision=...) accepts: the Literal members of the Trainer's own annotation.

    Public: read from Trainer.__init__'s signature, not from the private Literal it names
    (lightning.fabric.connector._PRECISION_INPUT); Lightning has no public list of them."""
    from lightning.pytorch import Trainer

    annotation = typing.get_type_hints(Trainer.__init__)["precision"]  # Optional[Union[Literal[...], ...]]
    members = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    return tuple(v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m))


def logging_step(trainer) -> int:
    """The step Lightning sends logged scalars at (the epoch-end metrics of epoch e at the step of its
    last batch), for what rnnlab writes to TensorBoard itself (text, histograms, figures, metrics/best).

    Private: `fit_loop.epoch_loop._batches_that_stepped`, the counter Lightning's logger connector,
    LearningRateMonitor and DeviceStatsMonitor read. The public `trainer.global_step` is one ahead of it
    in on_validation_end (the loop counts the batch after its validation), so a sample or figure
    would sit one step right of the validation scalars it belongs with (measured in tests/test_compat.py)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def mark_received_sigterm(trainer) -> None:
    """Make the Trainer stop after this batch as if SIGTERM had arrived, without Lightning's handler.

    Private: Trainer.received_sigterm is a read-only property over `_signal_connector.received_sigterm`;
    the one public way to set it is the SIGTERM handler, which under DDP broadcasts from inside the
    handler and hangs every rank (measured: `trainer=ddp_cpu trainer.devices=2`, Ctrl-C)."""
    trainer._signal_connector.received_sigterm = True


def release_ranks_waiting_for_sigterm(trainer) -> None:
    """Rank 0 stopped alone after a batch; the other ranks wait in the broadcast with which Lightning's
    training loop shares rank 0's SIGTERM flag before each batch: send them 1 and join the barrier that
    follows, so that they raise SIGTERMException at the same batch.

    Private protocol: `_TrainingEpochLoop._broadcast_sigterm_tensor` (a broadcast from rank 0 and a
    barrier); no public API stops every rank at one batch."""
    import torch

    flag = torch.tensor([1], device=trainer.strategy.root_device)
    torch.distributed.broadcast(flag, src=0)
    torch.distributed.barrier()


def wrap_lr_finder_bar(wrap: Callable[[Callable], Callable]) -> None:
    """Replace the tqdm of Lightning's learning-rate finder by `wrap(tqdm)` (once: a wrapper keeps the
    original as `__wrapped__`).

    Private: the finder's callback (`_LRCallback.on_train_batch_start`) calls the module global `tqdm` of
    lightning.pytorch.tuner.lr_finder on standard error with its refresh rate hard-wired, whatever
    Trainer(enable_progress_bar) says; Tuner.lr_find has no option for its bar."""
    from lightning.pytorch.tuner import lr_finder

    if getattr(lr_finder.tqdm, "__wrapped__", None) is None:
        wrapped = wrap(lr_finder.tqdm)
        wrapped.__wrapped__ = lr_finder.tqdm
        lr_finder.tqdm = wrapped


# torchmetrics ------------------------------------------------------------------------------------------

# What torchmetrics imports at its own import only because it is installed: `import lightning` imports
# torchmetrics (Lightning's logging takes its Metric), whose __init__ imports scipy.signal when
# lightning_utilities' package_available("scipy") says so, functional.audio imports it again behind the
# RequirementCache flag _SCIPI_AVAILABLE, and utilities.plot imports matplotlib.pyplot behind _MATPLOTLIB_AVAILABLE
# (scipy comes with the [search] extra, matplotlib with the forecast figures). An LM run uses neither.
# Measured (2026-12-03, torch 2.13, Lightning 2.6.6, torchmetrics 1.9.0, this 2-core CPU): docs/performance.md,
# "Issue 29": the seconds to the first step and the resident megabytes they cost.
TORCHMETRICS_HIDDEN_PACKAGES = ("scipy",)  # package_available() answers False while torchmetrics/__init__ runs
TORCHMETRICS_IMPORT_TIME_FLAGS = ("_SCIPI_AVAILABLE", "_MATPLOTLIB_AVAILABLE")  # in torchmetrics.utilities.imports
TORCHMETRICS_FLAGS_MODULE = "torchmetrics.utilities.imports"


class _TorchmetricsWithoutOptionalImports(MetaPathFinder):
    """Loads torchmetrics as it is, except that (1) while its __init__ runs, `TORCHMETRICS_HIDDEN_PACKAGES` are
    None in sys.modules, Python's own mark of a module that is not there (importlib.util.find_spec answers None),
    removed again at once, and (2) the RequirementCache flags of TORCHMETRICS_IMPORT_TIME_FLAGS are set to
    unavailable before torchmetrics reads them (a RequirementCache evaluates once, into `available`)."""

    def find_spec(self, name, path, target=None):
        if name not in ("torchmetrics", TORCHMETRICS_FLAGS_MODULE):
            return None
        if name == TORCHMETRICS_FLAGS_MODULE:
            sys.meta_path.remove(self)  # the second and last module this finder loads
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module
        spec.loader.exec_module = (self._exec_hiding if name == "torchmetrics" else self._exec_marking)(exec_module)
        return spec

    @staticmethod
    def _exec_hiding(exec_module):
        def exec_hiding(module) -> None:
            hidden = [p for p in TORCHMETRICS_HIDDEN_PACKAGES if p not in sys.modules]
            sys.modules.update(dict.fromkeys(hidden))
            try:
                exec_module(module)
            finally:
                for package in hidden:
                    if package in sys.modules and sys.modules[package] is None:
                        del sys.modules[package]
        return exec_hiding

    @staticmethod
    def _exec_marking(exec_module):
        def exec_marking(module) -> None:
            exec_module(module)
            for flag in TORCHMETRICS_IMPORT_TIME_FLAGS:
                cache = getattr(module, flag, None)
                if cache is not None:
                    cache.available = False
                    cache.message = "rnnlab's commands load torchmetrics without its optional imports (rnnlab.compat)"
        return exec_marking


def skip_torchmetrics_optional_imports() -> bool:
    """Before Lightning is imported: torchmetrics will not import scipy.signal and matplotlib.pyplot at its own
    import (True; False when torchmetrics is already imported, which then stays as it is).

    Private: torchmetrics' import-time checks (its __init__'s package_available("scipy"), the flags of
    torchmetrics.utilities.imports) and RequirementCache's cached `available`; torchmetrics has no public switch
    for its optional imports. What a user loses, in this process only: torchmetrics' own `Metric.plot()` (it says
    matplotlib is missing), its scipy-based options (scipy.signal.hamming for SRMR, the scipy solver of PIT with
    3+ speakers), and lightning_utilities' package_available("scipy") says False. scipy and matplotlib
    themselves import as usual (Lightning's learning-rate plot and rnnlab's figures import matplotlib where they
    draw). Called by the commands (rnnlab.cli.common.hydra_cli: train.py, eval.py, rnnlab-eval), never on
    import of rnnlab: a program that imports rnnlab gets torchmetrics as installed."""
    if "torchmetrics" in sys.modules or any(isinstance(f, _TorchmetricsWithoutOptionalImports) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _TorchmetricsWithoutOptionalImports())
    return True


# torch._dynamo ------------------------------------------------------------------------------------------

# `import lightning` imports torch._dynamo (with sympy, mpmath and torch.fx's passes), which only torch.compile
# needs: (1) two of its modules do `from torch._dynamo import OptimizedModule` (the class torch.compile wraps a
# module in) and use it only in isinstance checks (lightning.fabric.wrappers: _unwrap_compiled, _unwrap_objects;
# lightning.pytorch.utilities.compile: from_compiled, to_uncompiled, _maybe_unwrap_optimized); (2) its
# logger_connector.result decorates two methods with torch.compiler.disable, which imports torch._dynamo to mark
# them for the compiler. A run that never compiles needs neither. What it saves is an evaluation's: a training
# run imports torch._dynamo anyway, through torch.optim (Optimizer.add_param_group and step). Measured
# (2026-12-03, torch 2.13, Lightning 2.6.6, this 2-core CPU; docs/performance.md, "Issue 29, round three"):
# eval.py 4.6-5.0 s and 330 MB against 6.0-7.0 s and 396 MB.
DYNAMO = "torch._dynamo"
DYNAMO_IMPORTERS = (
    "lightning.fabric.wrappers",
    "lightning.pytorch.utilities.compile",
    "lightning.pytorch.trainer.connectors.logger_connector.result",
)


def _real_dynamo():
    """torch._dynamo if something imported it (torch.compile does), else None."""
    dynamo = sys.modules.get(DYNAMO)
    return None if dynamo is None or isinstance(dynamo, _DynamoStandIn) else dynamo


class _DeferredOptimizedModuleType(type):
    """isinstance/issubclass against torch._dynamo's OptimizedModule once torch._dynamo is imported, False
    before: an OptimizedModule exists only after something imported torch._dynamo."""

    def __instancecheck__(cls, obj) -> bool:
        dynamo = _real_dynamo()
        return dynamo is not None and isinstance(obj, dynamo.OptimizedModule)

    def __subclasscheck__(cls, subclass) -> bool:
        dynamo = _real_dynamo()
        return dynamo is not None and issubclass(subclass, dynamo.OptimizedModule)


class DeferredOptimizedModule(metaclass=_DeferredOptimizedModuleType):
    """What Lightning's importers of torch._dynamo get for `OptimizedModule` (see defer_dynamo_import)."""


def deferred_compiler_disable(fn=None, recursive=True, *, reason=None):
    """torch.compiler.disable, applied when torch._dynamo is imported: until then nothing is compiled, so `fn`
    runs as it is; from then on, as torch._dynamo.disable(fn, ...) (made once)."""
    if fn is None:
        return functools.partial(deferred_compiler_disable, recursive=recursive, reason=reason)
    disabled = []

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if not disabled:
            dynamo = _real_dynamo()
            if dynamo is None:
                return fn(*args, **kwargs)
            disabled.append(dynamo.disable(fn, recursive, reason=reason))
        return disabled[0](*args, **kwargs)

    return run


class _DynamoStandIn(types.ModuleType):
    """In sys.modules as torch._dynamo only while a module of DYNAMO_IMPORTERS runs: its OptimizedModule is
    DeferredOptimizedModule; any other name imports the real torch._dynamo (nothing breaks, nothing is saved)."""

    def __getattr__(self, name):
        if name.startswith("__"):  # the import system's own probes (__path__, __spec__...)
            raise AttributeError(name)
        if sys.modules.get(DYNAMO) is self:
            del sys.modules[DYNAMO]
        return getattr(importlib.import_module(DYNAMO), name)


class _LightningWithoutDynamo(MetaPathFinder):
    """Loads DYNAMO_IMPORTERS as they are, except that while each runs, torch._dynamo in sys.modules is a
    _DynamoStandIn and torch.compiler.disable is deferred_compiler_disable (both restored at once). Leaves
    sys.meta_path when it has loaded them all."""

    def find_spec(self, name, path, target=None):
        if name not in DYNAMO_IMPORTERS:
            return None
        if all(m in sys.modules or m == name for m in DYNAMO_IMPORTERS):
            sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_deferring(module) -> None:
            import torch.compiler

            if DYNAMO in sys.modules:
                return exec_module(module)
            stand_in = _DynamoStandIn(DYNAMO, "rnnlab.compat's stand-in while Lightning imports (not torch's)")
            stand_in.OptimizedModule = DeferredOptimizedModule
            disable = torch.compiler.disable
            sys.modules[DYNAMO], torch.compiler.disable = stand_in, deferred_compiler_disable
            try:
                exec_module(module)
            finally:
                torch.compiler.disable = disable
                if sys.modules.get(DYNAMO) is stand_in:
                    del sys.modules[DYNAMO]

        spec.loader.exec_module = exec_deferring
        return spec


def defer_dynamo_import() -> bool:
    """Before Lightning is imported: Lightning will not import torch._dynamo at its own import (True; False when
    one of its importers of it is already imported: Lightning then stays as it is).

    Private: the module-level `from torch._dynamo import OptimizedModule` and `@torch.compiler.disable` of
    DYNAMO_IMPORTERS; Lightning has no switch for them. Nothing is lost: torch.compile (model.compile, or the
    user's own) imports torch._dynamo as usual, and from then on Lightning's isinstance checks see its
    OptimizedModule and its two logging methods are disabled for the compiler, as Lightning has them. Called by
    the commands (rnnlab.cli.common.hydra_cli), never on import of rnnlab."""
    if any(name in sys.modules for name in DYNAMO_IMPORTERS) or any(
        isinstance(f, _LightningWithoutDynamo) for f in sys.meta_path
    ):
        return False
    sys.meta_path.insert(0, _LightningWithoutDynamo())
    return True


# torch -------------------------------------------------------------------------------------------------

def rnn_tracing(enabled: bool) -> AbstractContextManager:
    """A context in which torch.compile traces (`enabled`) or leaves eager the built-in nn.RNN/GRU/LSTM.

    Private: `torch._dynamo.config.allow_rnn`; torch.compiler has no public switch for it (torch 2.13), and
    without it dynamo graph-breaks at every built-in recurrence."""
    import torch._dynamo.config

    return torch._dynamo.config.patch(allow_rnn=enabled)


# tqdm -------------------------------------------------------------------------------------------------------
def open_progress_bars() -> list:
    """The tqdm bars still open, lowest on the screen first. tqdm keeps them in the class attribute
    `_instances` (tqdm 4; `tqdm.write` clears them the same way) and has no public list: an error or a stop
    in the middle of an epoch leaves Lightning's bars unfinished, and rnnlab.run.result closes them so the
    line printed next starts on its own line."""
    try:
        from tqdm import tqdm
    except ImportError:
        return []
    return sorted(getattr(tqdm, "_instances", ()), key=lambda b: -abs(getattr(b, "pos", 0)))
