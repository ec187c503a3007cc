"""Canaries: each library internal rnnlab.compat (and the few protected attributes of Lightning's classes
rnnlab's subclasses use) relies on still exists and behaves as measured. A failure here names what a new
Lightning or torch changed, before a run meets it."""

from __future__ import annotations

import contextlib
import inspect
import io
import signal
import typing

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from rnnlab import compat
from rnnlab.callbacks import LIGHTNING_SIGNAL_LOG, _stop_all_ranks
from rnnlab.models.base import RnnlabModule


def assert_fresh_process_prints_ok(code: str) -> None:
    """Run `code` in a new Python process (nothing imported yet) and check it ends by printing ok."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def bare_trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                   enable_model_summary=False)
    return L.Trainer(**{**options, **kwargs})


# Lightning ------------------------------------------------------------------------------------------------
def test_precision_choices_are_the_literal_lightning_checks_precision_against():
    from lightning.fabric.connector import _PRECISION_INPUT

    private = tuple(v for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg))
    assert compat.precision_choices() == private
    assert {"32-true", "bf16-mixed", "16-mixed", 32, "64"} <= set(compat.precision_choices())


class StepRecorder(Logger):
    """A logger keeping the step of every scalar Lightning sends it."""

    name, version = "recorder", 0
    experiment = None

    def __init__(self):
        super().__init__()
        self.steps: dict[str, list[int]] = {}

    def log_metrics(self, metrics, step=None):
        for name in metrics:
            self.steps.setdefault(name, []).append(step)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class LoggedModel(BoringModel):
    def validation_step(self, batch, batch_idx):
        loss = super().validation_step(batch, batch_idx)["x"]
        self.log("val/loss", loss)


class AtValidationEnd(L.Callback):
    def __init__(self):
        self.seen: list[tuple[int, int]] = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.seen.append((compat.logging_step(trainer), trainer.global_step))


def test_logging_step_is_the_step_lightning_logs_validation_at_and_global_step_is_one_ahead():
    recorder, probe = StepRecorder(), AtValidationEnd()
    trainer = bare_trainer(logger=recorder, callbacks=[probe], max_epochs=2, limit_train_batches=3, log_every_n_steps=1,
                           limit_val_batches=2, num_sanity_val_steps=0)
    trainer.fit(LoggedModel())
    assert recorder.steps["val/loss"] == [2, 5] == [step for step, _ in probe.seen]
    assert [global_step for _, global_step in probe.seen] == [3, 6]  # why global_step cannot stand in


def test_mark_received_sigterm_sets_the_flag_lightnings_training_loop_reads():
    trainer = bare_trainer()
    assert trainer.received_sigterm is False
    _stop_all_ranks(trainer)  # rank 0: compat.mark_received_sigterm
    assert trainer.received_sigterm is True


def test_lightning_still_shares_rank_zeros_stop_by_a_broadcast_and_a_barrier():
    """compat.release_ranks_waiting_for_sigterm answers the other ranks in this protocol (DDP Ctrl-C)."""
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    source = inspect.getsource(_TrainingEpochLoop._broadcast_sigterm_tensor)
    assert "torch.distributed.broadcast(sigterm_tensor, src=0)" in source
    assert "torch.distributed.barrier()" in source and "raise SIGTERMException" in source
    assert "self._broadcast_sigterm_tensor()" in inspect.getsource(_TrainingEpochLoop.advance)


def test_lightning_still_logs_received_sigterm_where_the_renaming_looks(caplog):
    """InterruptCheckpoint renames Lightning's "Received SIGTERM: 15" under compat.SIGNAL_LOG when it
    forwards a SIGINT (if Lightning moves the line, the renaming has nothing to rename)."""
    assert LIGHTNING_SIGNAL_LOG == compat.SIGNAL_LOG
    trainer = bare_trainer()
    with caplog.at_level("INFO", logger=compat.SIGNAL_LOG):
        trainer._signal_connector._sigterm_notifier_fn(signal.SIGTERM, None)
    logged = [r.getMessage() for r in caplog.records if r.name == compat.SIGNAL_LOG]
    assert len(logged) == 1 and logged[0].endswith("Received SIGTERM: 15")  # after "[rank: 0] "


def test_rank_variables_are_those_lightning_reads_the_rank_from(monkeypatch):
    from lightning.fabric.utilities.rank_zero import _get_rank

    assert compat.RANK_VARIABLES in _get_rank.__code__.co_consts
    for key in compat.RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    assert _get_rank() is None
    for key in compat.RANK_VARIABLES:
        monkeypatch.setenv(key, "3")
        assert _get_rank() == 3
        monkeypatch.delenv(key)


def test_the_lr_finder_draws_its_bar_with_the_module_global_that_is_wrapped(monkeypatch):
    from lightning.pytorch.tuner import lr_finder

    assert 'tqdm(desc="Finding best initial lr"' in inspect.getsource(lr_finder._LRCallback)
    original = lr_finder.tqdm
    monkeypatch.setattr(lr_finder, "tqdm", getattr(original, "__wrapped__", original))
    calls = []

    def wrap(tqdm):
        return lambda *a, **k: calls.append(k) or tqdm(*a, disable=True, **k)

    compat.wrap_lr_finder_bar(wrap)
    compat.wrap_lr_finder_bar(wrap)  # once
    lr_finder.tqdm(desc="Finding best initial lr", total=1).close()
    assert lr_finder.tqdm.__wrapped__ is getattr(original, "__wrapped__", original) and len(calls) == 1


def test_tensorboard_logger_keeps_the_writer_and_its_options_where_run_logger_sets_them(tmp_path):
    """rnnlab.dashboard.logger.RunLogger opens its own writers into `_experiment` (Lightning's finalize,
    save and pickling read it) with the writer options `_kwargs` (resume_at adds purge_step there)."""
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="", version="", purge_step=3)
    assert logger._experiment is None and logger._kwargs == {"purge_step": 3}
    assert "self._experiment" in inspect.getsource(TensorBoardLogger.experiment.fget)
    assert logger.__getstate__()["_experiment"] is None


def test_an_older_checkpoints_best_state_gets_model_checkpoints_key():
    """Lightning keys a callback's state by class name and options: the state rnnlab's former subclass
    LastEpochCheckpoint saved is found under the key of a ModelCheckpoint with the same options."""
    options = dict(dirpath="/run/checkpoints", monitor="val/ppl", mode="min", save_on_train_epoch_end=True)
    LastEpochCheckpoint = type("LastEpochCheckpoint", (ModelCheckpoint,), {})
    old, new = LastEpochCheckpoint(**options), ModelCheckpoint(**options)
    unmonitored = ModelCheckpoint(dirpath="/run/checkpoints", filename="last", save_on_train_epoch_end=True)
    checkpoint = {"callbacks": {old.state_key: {"best_model_score": torch.tensor(2.5)},
                                unmonitored.state_key: {"best_model_path": "last.ckpt"}, "other": {}}}
    RnnlabModule().on_load_checkpoint(checkpoint)  # the module's hook: Lightning restores callbacks after it
    assert set(checkpoint["callbacks"]) == {new.state_key, unmonitored.state_key, "other"}
    assert checkpoint["callbacks"][new.state_key]["best_model_score"] == 2.5


# torchmetrics -----------------------------------------------------------------------------------------------
def test_torchmetrics_still_imports_scipy_and_matplotlib_at_its_import_through_the_flags_rnnlab_sets():
    """The lever still saves something (this process imported torchmetrics as installed) and still reaches
    it: the import-time check of torchmetrics/__init__ and the RequirementCache flags compat sets."""
    import torchmetrics
    import torchmetrics.utilities.imports as flags
    from lightning_utilities.core.imports import RequirementCache

    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    import sys

    assert {"scipy.signal", "matplotlib.pyplot"} <= set(sys.modules)  # imported by torchmetrics, as measured
    assert 'if package_available("scipy"):\n    import scipy.signal' in inspect.getsource(torchmetrics)
    for flag in compat.TORCHMETRICS_IMPORT_TIME_FLAGS:
        assert isinstance(getattr(flags, flag), RequirementCache) and "available" in vars(getattr(flags, flag))
    assert set(compat.TORCHMETRICS_HIDDEN_PACKAGES) == {"scipy"}


def test_skip_torchmetrics_optional_imports_leaves_scipy_and_matplotlib_out_and_usable():
    """In a fresh process (torchmetrics is imported here already): `import lightning` after the skip loads
    neither; torchmetrics' metrics work; the user's own imports of both still work."""

    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    code = (
        "import sys\n"
        "from rnnlab.compat import skip_torchmetrics_optional_imports as skip\n"
        "assert skip() and not skip()\n"
        "import lightning, torch, torchmetrics\n"
        "left = [m for m in ('scipy', 'scipy.signal', 'matplotlib', 'matplotlib.pyplot') if m in sys.modules]\n"
        "assert left == [], left\n"
        "assert not any(type(f).__name__.startswith('_Torchmetrics') for f in sys.meta_path)\n"
        "metric = torchmetrics.MeanMetric(); metric.update(torch.tensor([1.0, 3.0])); assert metric.compute() == 2\n"
        "import scipy.signal, matplotlib.pyplot\n"
        "from lightning.pytorch.tuner.lr_finder import _MATPLOTLIB_AVAILABLE\n"
        "assert _MATPLOTLIB_AVAILABLE  # Lightning's learning-rate plot keeps matplotlib\n"
        "print('ok')\n")
    assert_fresh_process_prints_ok(code)


# torch._dynamo ----------------------------------------------------------------------------------------------
def test_lightning_still_imports_torch_dynamo_at_its_import_where_compat_defers_it():
    """The lever still saves something and still reaches it: each of compat.DYNAMO_IMPORTERS takes
    OptimizedModule from torch._dynamo at module level or decorates with torch.compiler.disable, which imports
    torch._dynamo; and no other Lightning module imports it at module level."""
    import importlib
    from pathlib import Path

    import torch.compiler

    sources = {name: inspect.getsource(importlib.import_module(name)) for name in compat.DYNAMO_IMPORTERS}
    assert "\nfrom torch._dynamo import OptimizedModule\n" in sources["lightning.fabric.wrappers"]
    assert "\nfrom torch._dynamo import OptimizedModule\n" in sources["lightning.pytorch.utilities.compile"]
    assert "@torch.compiler.disable\n" in sources["lightning.pytorch.trainer.connectors.logger_connector.result"]
    assert "import torch._dynamo" in inspect.getsource(torch.compiler.disable)
    root = Path(L.__file__).parent

    def imports_dynamo_at_import(path: Path) -> bool:  # a module-level import, or a decorator anywhere
        return any(line.startswith(("from torch._dynamo", "import torch._dynamo"))
                   or line.strip().startswith("@torch.compiler.disable") for line in path.read_text().splitlines())

    importers = {".".join(("lightning", *p.relative_to(root).with_suffix("").parts))
                 for p in root.rglob("*.py") if imports_dynamo_at_import(p)}
    assert importers == set(compat.DYNAMO_IMPORTERS)


def test_defer_dynamo_import_leaves_torch_dynamo_out_and_compiled_modules_still_recognised():
    """In a fresh process: `import lightning` after the deferral loads neither torch._dynamo nor sympy, and a
    Trainer is built without them (trainer.deterministic=false passed on as None: rnnlab.run.build). Then
    torch.compile imports the real torch._dynamo, and Lightning's checks see its OptimizedModule and use its
    disable for the logging methods, as without the deferral."""

    code = (
        "import sys\n"
        "from rnnlab.compat import defer_dynamo_import as defer, DeferredOptimizedModule\n"
        "assert defer() and not defer()\n"
        "import lightning, torch\n"
        "from lightning.fabric.wrappers import _unwrap_compiled\n"
        "from lightning.pytorch.utilities.compile import _maybe_unwrap_optimized\n"
        "from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection\n"
        "from lightning.pytorch.demos.boring_classes import BoringModel\n"
        "from rnnlab.run.build import build_trainer\n"
        "trainer = build_trainer({'_target_': 'lightning.Trainer', 'deterministic': False, 'logger': False,\n"
        "                         'enable_progress_bar': False, 'accelerator': 'cpu'})\n"
        "left = [m for m in ('torch._dynamo', 'torch._inductor', 'sympy') if m in sys.modules]\n"
        "assert left == [], left\n"
        "assert not any(type(f).__name__ == '_LightningWithoutDynamo' for f in sys.meta_path)\n"
        "model = BoringModel()\n"
        "assert not isinstance(model, DeferredOptimizedModule) and _maybe_unwrap_optimized(model) is model\n"
        "compiled = torch.compile(model, backend='eager')\n"
        "import torch._dynamo\n"
        "assert isinstance(compiled, DeferredOptimizedModule) and issubclass(type(compiled), DeferredOptimizedModule)\n"
        "assert _unwrap_compiled(compiled) == (model, {'backend': 'eager'})\n"
        "assert _maybe_unwrap_optimized(compiled) is model\n"
        "results = _ResultCollection(training=True)\n"
        "results.log('training_step', 'x', torch.tensor(2.0), on_step=False, on_epoch=True, batch_size=1)\n"
        "assert float(results['training_step.x'].value) == 2.0\n"
        "print('ok')\n")
    assert_fresh_process_prints_ok(code)


def test_deferred_compiler_disable_runs_the_function_then_dynamos_disabled_version():
    calls = []

    def fn(x):
        calls.append(x)
        return 2 * x

    deferred = compat.deferred_compiler_disable(fn)
    assert deferred(3) == 6 and calls == [3] and deferred.__wrapped__ is fn
    assert compat.deferred_compiler_disable(recursive=False)(fn)(1) == 2  # the decorator's keyword form
    import torch._dynamo  # noqa: F401  (this process has it; the branch after the import)

    compiled = torch.compile(lambda x: deferred(x) + 1, backend="eager")
    assert compiled(torch.tensor(1.0)).item() == 3.0  # traced around: fn runs eagerly (it appends)
    assert isinstance(calls[-1], torch.Tensor)


def test_trainer_deterministic_false_leaves_torchs_flag_alone_unless_it_is_on():
    from rnnlab.run.build import unchanged_deterministic

    assert not torch.are_deterministic_algorithms_enabled()
    assert unchanged_deterministic(False) is None
    assert unchanged_deterministic(True) is True and unchanged_deterministic("warn") == "warn"
    assert unchanged_deterministic(None) is None
    torch.use_deterministic_algorithms(True)
    try:
        assert unchanged_deterministic(False) is False  # an earlier run in this process turned it on
        bare_trainer(deterministic=unchanged_deterministic(False))
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# torch ------------------------------------------------------------------------------------------------------
def test_rnn_tracing_switches_dynamos_allow_rnn_for_its_block_only():
    import torch._dynamo.config as dynamo_config

    before = dynamo_config.allow_rnn
    assert isinstance(before, bool)
    for enabled in (True, False):
        with compat.rnn_tracing(enabled):
            assert dynamo_config.allow_rnn is enabled
        assert dynamo_config.allow_rnn is before



# The public replacement of rnnlab's former ModelCheckpoint subclass ------------------------------------------
def test_callbacks_minimal_also_writes_last_ckpt_after_every_epoch(tmp_path):
    """conf/callbacks: an unmonitored ModelCheckpoint named `last` holds last.ckpt at the final epoch while
    the monitored one keeps the best (mode=max on a falling val/ppl: epoch 0 stays the best)."""
    from conftest import compose_config
    from rnnlab.run.job import main_task

    run = tmp_path / "run"
    small = ("data.max_tokens=4000", "data.batch_size=8", "data.num_steps=10", "data.val_batch_size=4")
    main_task(compose_config(run, "callbacks=minimal", "trainer.max_epochs=2", "callbacks.model_checkpoint.mode=max",
                             *small, tiny=False))
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(ckpts / "best-epoch000.ckpt", map_location="cpu", weights_only=True)
    assert (best["epoch"], last["epoch"]) == (0, 1) and last["global_step"] == 2 * best["global_step"]


# tqdm -------------------------------------------------------------------------------------------------------
def test_end_progress_lines_closes_every_open_tqdm_bar():
    """compat.open_progress_bars finds the open bars through tqdm's `_instances`: the final line after them
    starts on its own line."""
    from tqdm import tqdm

    from rnnlab.run.result import report

    screen = io.StringIO()
    outer, inner = tqdm(total=10, file=screen, leave=True), tqdm(total=5, file=screen, leave=False)
    outer.update(3), inner.update(2)
    with contextlib.redirect_stderr(screen):
        report("error: x")
    before, _, after = screen.getvalue().partition("error: x")
    assert before.endswith("\n") and after == "\n" and outer.disable and inner.disable
