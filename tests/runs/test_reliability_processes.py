"""Standard error holds only errors (Lightning's and Optuna's notes go to the run's log), the DDP
process of rank 1 logs nothing, a stored Optuna study continues with new trials, and a missing extra
names the pip command that installs it (issue 26, rows of rnnlab.run.quiet, rnnlab.run.search,
rnnlab.extras and rnnlab.cli.common)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import shutil
import subprocess
import sys
import warnings

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import CONF, ROOT, TINY, compose_config
from rnnlab import extras
from rnnlab.cli.common import missing_extra_line
from rnnlab.run import quiet
from rnnlab.run.job import main_task
from rnnlab.run.search import ContinueStoredStudy

LIMIT = 600  # seconds: only against a hung run on a loaded machine
# Small enough for two CPU cores (as tests/runs/test_sweeps.py runs its searches).
SEARCH = ["hparams_search=lm_optuna", "debug=fdr", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
          "print_config=false", "data.max_tokens=4000", "data.batch_size=4", "data.num_steps=8",
          "data.val_batch_size=4", "model.hidden_size=8", "hydra.sweeper.n_trials=2"]


def cli(*args: str, script: str = "train.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=LIMIT)


def run_config(*overrides: str):
    """The composed `train` config with its `hydra` node, as Hydra's callbacks receive it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def search_config(*overrides: str):
    return run_config("hparams_search=lm_optuna", *overrides)


# Warnings and Lightning's notes: the run's log, not standard error ---------------------------------------
def test_warnings_go_to_the_run_log_and_lightnings_developer_notes_are_dropped(caplog, capsys):
    quiet.lightning_logs_to_the_run_log()
    with caplog.at_level(logging.INFO):
        warnings.warn("Precision bf16-mixed is not supported by the model summary.", UserWarning)
        warnings.warn("Checkpoint directory /x/checkpoints exists and is not empty.", UserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", UserWarning)
    assert capsys.readouterr().err == ""
    logged = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert len(logged) == 1 and logged[0][:2] == (quiet.WARNINGS_LOGGER, "WARNING")
    assert "test_reliability_processes.py:" in logged[0][2]  # where it was raised, as Python prints it
    assert "UserWarning: Precision bf16-mixed is not supported by the model summary." in logged[0][2]


def test_the_lr_finder_bar_goes_to_standard_output_and_only_on_a_terminal(capsys):
    import inspect

    from lightning.pytorch.tuner import lr_finder

    # What quiet.lr_finder_bar_to_stdout relies on (Lightning 2.6): the callback calls the module's `tqdm`.
    assert 'tqdm(desc="Finding best initial lr"' in inspect.getsource(lr_finder._LRCallback)
    quiet.lr_finder_bar_to_stdout()
    quiet.lr_finder_bar_to_stdout()  # idempotent: wrapped once
    assert lr_finder.tqdm.__wrapped__.__name__ == "tqdm"
    bar = lr_finder.tqdm(desc="Finding best initial lr", total=3)
    assert bar.disable  # pytest's captured stdout is not a terminal
    bar.close()

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    bar = lr_finder.tqdm(desc="Finding best initial lr", total=3, file=screen)
    bar.update()
    bar.close()
    assert "Finding best initial lr" in screen.getvalue() and capsys.readouterr().err == ""


def test_a_ddp_process_of_rank_one_logs_only_errors_and_to_no_file(monkeypatch):
    """What Hydra sets up in the process Lightning starts for rank 1 (LOCAL_RANK=1)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    cfg = run_config()
    assert "filename" in cfg.hydra.job_logging.handlers.file  # Hydra's default: console and <job name>.log
    quiet.OtherProcessesLogOnlyErrors().on_run_start(cfg)
    logging_config = OmegaConf.to_container(cfg.hydra.job_logging)
    assert list(logging_config["handlers"]) == ["console"] and logging_config["root"]["handlers"] == ["console"]
    assert logging_config["handlers"]["console"]["level"] == "ERROR"

    console = io.StringIO()  # that configuration at work (Hydra's console writes to stdout)
    logging_config["handlers"]["console"]["stream"] = console
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # dictConfig replaces the root's handlers and level: both restored
    monkeypatch.setattr(root, "level", root.level)
    logging.config.dictConfig(logging_config)
    log = logging.getLogger("rnnlab.run.job")
    log.info("config: ...")
    log.warning("a note")
    log.error("a failure")
    assert console.getvalue().endswith("][ERROR] - a failure\n") and "config:" not in console.getvalue()


@pytest.mark.parametrize("job_logging", ["default", "disabled", "none"])
def test_the_main_process_keeps_its_log_and_any_logging_config_is_accepted(monkeypatch, job_logging):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    for rank in (0, 1):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        cfg = run_config(f"hydra/job_logging={job_logging}")
        before = OmegaConf.to_container(cfg.hydra.job_logging)
        quiet.OtherProcessesLogOnlyErrors().on_run_start(cfg)
        if rank == 0 or job_logging != "default":  # nothing to change without a handler
            assert OmegaConf.to_container(cfg.hydra.job_logging) == before


LIMITS = ["trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]
SHORT = [*TINY, *LIMITS]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short epoch, trained in process; tests copy it before resuming it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = compose_config(run, *LIMITS, "trainer.max_epochs=1")
    main_task(cfg)
    OmegaConf.save(cfg, run.parent / "config.yaml", resolve=True)  # what train.py keeps in .hydra/, for eval.py
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    return run


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow  # a real command (~7 s); the warnings routing is tested in process above
def test_extending_a_finished_run_leaves_standard_error_empty(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    proc = cli(*SHORT, "trainer.max_epochs=2", "ckpt_path=last", f"hydra.run.dir={run}")
    assert proc.returncode == 0 and proc.stderr == ""  # was: ModelCheckpoint's "Checkpoint directory ... exists"
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert "final:" in proc.stdout and "final:" in (run / "train.log").read_text()


@pytest.mark.slow
def test_resuming_a_finished_run_prints_only_that_it_is_finished(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    proc = cli(*SHORT, "trainer.max_epochs=1", "ckpt_path=last", f"hydra.run.dir={run}")
    assert proc.returncode == 0 and proc.stderr == ""  # not an error: the line goes to standard output
    assert proc.stdout.splitlines()[-1:] == [f"{run} is a finished run (epoch 1 of trainer.max_epochs=1, metrics.json "
                                        "status ok): nothing to resume, nothing changed; raise trainer.max_epochs "
                                        "to train it further"]


@pytest.mark.slow
def test_the_lr_finder_leaves_standard_error_empty(tmp_path):
    proc = cli(*TINY, "trainer.max_epochs=1", "tune.lr_find=true", "tune.num_training=20",
               f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0 and proc.stderr == ""  # was: the range test's tqdm bar
    assert "Finding best initial lr" not in proc.stdout  # not a terminal: no bar
    assert "lr finder: suggested" in proc.stdout


@pytest.mark.slow
def test_bf16_model_summary_note_goes_to_the_run_log(tmp_path):
    run = tmp_path / "run"
    proc = cli(*TINY, "trainer.max_epochs=1", "trainer.precision=bf16-mixed", "trainer.enable_model_summary=true",
               f"hydra.run.dir={run}")
    assert proc.returncode == 0 and proc.stderr == ""
    assert "[py.warnings][WARNING] - " in (run / "train.log").read_text()
    assert "Precision bf16-mixed is not supported by the model summary" in (run / "train.log").read_text()


@pytest.mark.slow
def test_eval_leaves_standard_error_empty(trained, tmp_path):
    proc = cli(f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", f"run_config={trained.parent / 'config.yaml'}",
               "num_tokens=10", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'eval'}",
               script="eval.py")
    assert proc.returncode == 0 and proc.stderr == ""  # was: Lightning's LeafSpec deprecation note
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["val/ppl"] > 1


# DDP: only the main process logs ------------------------------------------------------------------------
@pytest.mark.slow  # two processes, ~15 s
def test_ddp_prints_the_config_and_results_once_and_writes_one_log(tmp_path):
    run = tmp_path / "run"
    proc = cli(*TINY, "print_config=true", "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1",
               f"hydra.run.dir={run}")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    for out in (proc.stdout, (run / "train.log").read_text()):
        assert out.count("[rnnlab.run.job][INFO] - config:") == 1 and out.count("- final: ") == 1
        assert "GLOBAL_RANK: 1" not in out
    assert sorted(p.name for p in run.glob("*.log")) == ["train.log"]  # no train_ddp_process_1.log


# Optuna: its study line in the run's log, a stored study continued with new trials ----------------------
def test_optunas_study_line_goes_to_the_run_log(caplog, capfd):
    import optuna

    quiet.OptunaLogsToTheRunLog().on_multirun_start(search_config())
    with caplog.at_level(logging.INFO):
        optuna.create_study(study_name="lm_search")
    assert capfd.readouterr().err == ""
    assert any("A new study created in memory with name: lm_search" in r.getMessage() for r in caplog.records)


def stored_study(storage: str, trials: int) -> None:
    import optuna

    study = optuna.create_study(study_name="lm_search", storage=storage)
    for _ in range(trials):
        study.tell(study.ask({"x": optuna.distributions.UniformDistribution(0, 1)}), 1.0)


@pytest.mark.parametrize("trials, storage, seed", [(3, "stored", 1237), (0, "fresh", 1234), (0, None, 1234)])
def test_a_stored_studys_sampler_seed_moves_on_by_its_trials(tmp_path, trials, storage, seed):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    if storage == "stored":
        stored_study(url, trials)
    cfg = search_config(f"hydra.sweeper.storage={url if storage else 'null'}")
    ContinueStoredStudy().on_multirun_start(cfg)
    assert cfg.hydra.sweeper.sampler.seed == seed


@pytest.mark.slow  # two searches of two trials, ~40 s
def test_a_stored_search_rerun_draws_new_trials_and_standard_error_stays_empty(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    params = []
    for rerun in ("first", "again"):  # the plain command, twice
        proc = cli(*SEARCH, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / rerun}")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]  # was: Optuna's study line
        assert "A new study created in RDB" in proc.stdout if rerun == "first" else "holds 2 trials" in proc.stdout
        trials = optuna.load_study(study_name="lm_search", storage=storage).trials
        params.append([t.params for t in trials[-2:]])
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert params[0] != params[1]  # was: the same two trials again


# A missing extra: one line naming the pip command ---------------------------------------------------------
# Runs a script as if some packages were not installed: their imports fail, and Hydra's plugin scan
# (pkgutil.walk_packages over hydra_plugins) does not see them.
HIDE = """
import pkgutil, runpy, sys
hidden = tuple(sys.argv[1].split(","))
def is_hidden(name): return any(name == h or name.startswith(h + ".") for h in hidden)
class Hide:
    def find_spec(self, name, path=None, target=None):
        if is_hidden(name):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
walk = pkgutil.walk_packages
pkgutil.walk_packages = lambda *a, **k: (i for i in walk(*a, **k) if not is_hidden(i.name))
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
OPTUNA = "optuna,hydra_plugins.hydra_optuna_sweeper"
SUBMITIT = "submitit,hydra_plugins.hydra_submitit_launcher"
SEARCH_EXTRA, CLUSTER_EXTRA = 'pip install "rnnlab[search]"', 'pip install "rnnlab[cluster]"'
MISSING = [
    pytest.param(OPTUNA, ["hparams_search=lm_optuna"], "error: hparams_search=lm_optuna needs the optuna sweeper "
                 f"(hydra-optuna-sweeper), which is not installed: {SEARCH_EXTRA}", id="sweeper"),
    pytest.param(SUBMITIT, ["-m", "launcher=slurm", "seed=1,2"], "error: launcher=slurm needs the submitit_slurm "
                 f"launcher (hydra-submitit-launcher), which is not installed: {CLUSTER_EXTRA}", id="launcher"),
    pytest.param(SUBMITIT, ["-m", "launcher=submitit_local", "seed=1,2"], "error: launcher=submitit_local needs the "
                 f"submitit_local launcher (hydra-submitit-launcher), which is not installed: {CLUSTER_EXTRA}",
                 id="local-launcher"),
    # The plugin there, a package it imports not: the sweeper's sampler, the launcher when it launches.
    pytest.param("optuna", ["hparams_search=lm_optuna"],
                 f"error: hparams_search=lm_optuna needs optuna, which is not installed: {SEARCH_EXTRA}",
                 id="sweeper-package"),
    pytest.param("submitit", ["-m", "launcher=submitit_local", "seed=1,2"],
                 f"error: launcher=submitit_local needs submitit, which is not installed: {CLUSTER_EXTRA}",
                 id="launcher-package"),
]


@pytest.mark.parametrize("hidden, args, line", MISSING)
def test_a_missing_extra_is_one_line_naming_the_pip_install(tmp_path, hidden, args, line):
    where = [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-c", HIDE, hidden, "train.py", *args, "debug=fdr", *where], cwd=ROOT,
                          capture_output=True, text=True, timeout=LIMIT)  # debug=fdr: one batch, were it to train
    assert proc.returncode == 2 and proc.stderr == line + "\n"
    assert not list(tmp_path.rglob("metrics.json"))


def test_which_extra_installs_what():
    assert [extras.extra_of(p) for p in ("optuna", "hydra-optuna-sweeper", "SQLAlchemy", "hydra_submitit_launcher",
                                         "submitit", "mlflow", "wandb")] == [
        "search", "search", "search", "cluster", "cluster", "mlflow", "wandb"]  # submitit: through its launcher
    assert extras.extra_of("torch") is None and extras.extra_of("hydra-ray-launcher") is None
    assert extras.distribution_of("hydra_plugins.hydra_optuna_sweeper._impl") == "hydra-optuna-sweeper"


def test_a_loggers_missing_package_names_its_extra():
    """What rnnlab.run.build reports for logger=mlflow without the extra: Lightning's MLFlowLogger raises
    ModuleNotFoundError("Requirement 'mlflow>=1.0.0' not met. ...") (Lightning 2.6)."""
    error = ModuleNotFoundError("Requirement 'mlflow>=1.0.0' not met. "
                                "HINT: Try running `pip install -U 'mlflow>=1.0.0'`")
    assert extras.missing_package("logger.mlflow", error) == (
        'logger.mlflow needs mlflow, which is not installed: pip install "rnnlab[mlflow]"')
    assert extras.missing_package("logger.x", ModuleNotFoundError("No module named 'yaml_x'", name="yaml_x")) is None


def test_an_error_that_is_not_a_missing_extra_is_left_alone():
    assert missing_extra_line(ValueError("In 'hydra/config': Could not find 'hydra/launcher/nonsense'")) is None
    assert missing_extra_line(ModuleNotFoundError("No module named 'torch'", name="torch")) is None
    assert missing_extra_line(RuntimeError("boom")) is None
