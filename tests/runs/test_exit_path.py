"""One exit path (issue 28, item 3): a run returns a RunResult, and rnnlab.run.result.finish alone writes
metrics.json, prints the final line and picks the exit status; the summary shows what task.summary names.

In process and cheap: the job's failures are injected where the job would raise them (train_and_evaluate,
evaluate_checkpoint), and a spy on `finish` sees every way a run ends go through it."""

from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import rnnlab.run.eval_job as eval_job
import rnnlab.run.job as job
import rnnlab.run.result as result_module
from conftest import ROOT, compose_config, one_error_line
from rnnlab.errors import CheckpointWriteError, ConfigError, DivergenceError
from rnnlab.run.interrupts import Interrupted
from rnnlab.run.result import EXIT_CODES, RunResult, end_before_run
from rnnlab.run.resume import FinishedRun

SRC = ROOT / "src" / "rnnlab"


def record(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@lru_cache(maxsize=None)
def _composed(task: str):
    return compose_config(Path("/unused"), f"task={task}", tiny=task == "lm")


def config(run: Path, task: str = "lm", **updates):
    """The composed config (composed once per task: composing is most of these tests' time), writing
    into `run`, with `updates` (dotted keys as `a__b`) set as a command-line override would set them."""
    cfg = _composed(task).copy()
    cfg.paths.output_dir = str(run)
    for key, value in updates.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


@pytest.fixture
def finished(monkeypatch):
    """The RunResults that reach rnnlab.run.result.finish, from main_task and main_eval."""
    seen: list[RunResult] = []

    def spy(result, *args, **kwargs):
        seen.append(result)
        return result_module.finish(result, *args, **kwargs)

    monkeypatch.setattr(job, "finish", spy)
    monkeypatch.setattr(eval_job, "finish", spy)
    return seen


def ending(monkeypatch, outcome) -> None:
    """The training job ends with `outcome`: raised if an exception, returned as its record otherwise."""
    def train_and_evaluate(cfg, phases=None):
        if isinstance(outcome, BaseException):
            raise outcome
        return dict(outcome)

    monkeypatch.setattr(job, "train_and_evaluate", train_and_evaluate)


# Every way a training run ends: status, exit status, the line and where it goes, metrics.json --------------
FAILURES = [  # (outcome, status, exit status, the stderr line, metrics.json)
    (ConfigError("optimizer.lr=-1 is invalid: must be > 0"), "config_error", 2,
     "error: optimizer.lr=-1 is invalid: must be > 0",
     {"status": "config_error", "error": "optimizer.lr=-1 is invalid: must be > 0"}),
    (DivergenceError("training diverged: train/loss is nan at step 3"), "diverged", 1,
     "error: training diverged: train/loss is nan at step 3",
     {"status": "diverged", "error": "training diverged: train/loss is nan at step 3"}),
    (CheckpointWriteError("checkpoint last.ckpt could not be written (No space left on device)"), "checkpoint_error",
     1, "error: checkpoint last.ckpt could not be written (No space left on device)",
     {"status": "checkpoint_error", "error": "checkpoint last.ckpt could not be written (No space left on device)"}),
    (Interrupted("SIGTERM", "data build"), "interrupted", 1,
     "interrupted by SIGTERM during data build: nothing was trained",
     {"status": "interrupted", "phase": "data build", "signal": "SIGTERM", "checkpoint": None}),
]


@pytest.mark.parametrize("outcome, status, code, line, written", FAILURES, ids=[f[1] for f in FAILURES])
def test_a_failed_run_ends_through_finish(tmp_path, capsys, monkeypatch, finished, outcome, status, code, line,
                                          written):
    run = tmp_path / "run"
    ending(monkeypatch, outcome)
    with pytest.raises(SystemExit) as info:
        job.main_task(config(run))
    out, err = capsys.readouterr()
    assert info.value.code == code == EXIT_CODES[status]
    assert err.splitlines() == [line] and line not in out
    assert record(run) == written
    assert [r.status for r in finished] == [status]


def test_a_divergence_names_the_last_good_checkpoint(tmp_path, capsys, monkeypatch, finished):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    ending(monkeypatch, DivergenceError("training diverged"))
    with pytest.raises(SystemExit):
        job.main_task(config(run))
    assert record(run)["last_good_checkpoint"] == "checkpoints/last.ckpt"  # relative to the run directory


SUCCESSES = [  # (the job's record, status, returned value, stdout line or None)
    ({"status": "ok", "val/ppl": 5.5, "train/ppl": 6.0, "epochs": 2}, "ok", 5.5, None),
    ({"status": "debug", "val/ppl": 7.0, "epochs": 1}, "debug", 7.0, None),
    ({"status": "tuned", "lr_find/suggestion": 0.25, "lr_find/configured": 1.0, "lr_find/plot": None}, "tuned", None,
     "lr finder: suggested lr 0.25 (configured 1.0); train with it: tune.apply=true or optimizer.lr=0.25; plot: None"),
]


@pytest.mark.parametrize("metrics, status, value, line", SUCCESSES, ids=[s[1] for s in SUCCESSES])
def test_a_completed_run_ends_through_finish(tmp_path, capsys, caplog, monkeypatch, finished, metrics, status, value,
                                              line):
    run = tmp_path / "run"
    ending(monkeypatch, metrics)
    with caplog.at_level("INFO", logger="rnnlab.run.job"):
        assert job.main_task(config(run)) == value
    out, err = capsys.readouterr()
    assert err == "" and record(run) == metrics and [r.status for r in finished] == [status]
    assert (out.splitlines() == [line]) if line else out == ""
    notes = [r.getMessage() for r in caplog.records if r.name == "rnnlab.run.job"]
    if status == "tuned":
        assert not [n for n in notes if n.startswith("final:")]
    else:
        summary = {k: v for k, v in metrics.items() if k != "status"}
        assert f"final: {json.dumps(summary)}" in notes and f"run directory: {run}" in notes
        assert (status == "debug") == ('debug run (recorded as status "debug", not as a result)' in notes)


def test_a_finished_run_found_again_changes_nothing_and_exits_0(tmp_path, capsys, monkeypatch, finished):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"status": "ok", "val/ppl": 4.0}\n')
    ending(monkeypatch, FinishedRun(f"{run} is a finished run: nothing to train", {"status": "ok", "val/ppl": 4.0}))
    assert job.main_task(config(run, ckpt_path="last")) == 4.0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{run} is a finished run: nothing to train"] and err == ""
    assert (run / "metrics.json").read_text() == '{"status": "ok", "val/ppl": 4.0}\n'  # not rewritten
    assert [(r.status, r.write) for r in finished] == [("finished", False)]


def test_a_refused_resume_keeps_the_results_it_found(tmp_path, capsys, monkeypatch, finished):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"status": "ok", "val/ppl": 4.0}\n')
    ending(monkeypatch, ConfigError("ckpt_path='last' is invalid: another model"))
    with pytest.raises(SystemExit) as info:
        job.main_task(config(run, ckpt_path="last"))
    assert info.value.code == 2
    assert one_error_line(capsys.readouterr().err) == "error: ckpt_path='last' is invalid: another model"
    assert record(run) == {"status": "ok", "val/ppl": 4.0}


def test_the_real_error_path_goes_through_finish(tmp_path, capsys, finished):
    """Not injected: the schema refuses the option, before anything is built."""
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        job.main_task(config(run, optimizer__lr=-1))
    line = one_error_line(capsys.readouterr().err)
    assert info.value.code == 2 and line.startswith("error: optimizer.lr=-1 is invalid")
    assert record(run) == {"status": "config_error", "error": line[len("error: "):]}
    assert [r.status for r in finished] == ["config_error"]


def test_inside_a_multirun_a_failed_job_is_raised_and_a_stop_still_exits(tmp_path, capsys, monkeypatch):
    """Hydra marks a failed job failed and the sweep goes on; a stop signal stops the whole sweep."""
    monkeypatch.setattr(result_module, "_in_multirun", lambda: True)
    run = tmp_path / "run"
    error = DivergenceError("training diverged")
    ending(monkeypatch, error)
    with pytest.raises(DivergenceError) as info:
        job.main_task(config(run))
    assert info.value is error and record(run)["status"] == "diverged" and capsys.readouterr().err == ""
    ending(monkeypatch, Interrupted("SIGINT", "config check"))
    with pytest.raises(SystemExit) as stop:
        job.main_task(config(tmp_path / "stopped"))
    assert stop.value.code == 1 and record(tmp_path / "stopped")["status"] == "interrupted"


def test_a_record_that_cannot_be_written(tmp_path, capsys, caplog, monkeypatch):
    """A failure still ends with its line and exit status (the error in the log); a result is no result."""
    run = tmp_path / "run"
    run.write_text("a file where the run directory should be")
    ending(monkeypatch, CheckpointWriteError("checkpoint last.ckpt could not be written"))
    with pytest.raises(SystemExit) as info, caplog.at_level("ERROR", logger="rnnlab.run.job"):
        job.main_task(config(run))
    assert info.value.code == 1 and capsys.readouterr().err.splitlines() == [
        "error: checkpoint last.ckpt could not be written"]
    assert "metrics.json could not be written" in caplog.text
    ending(monkeypatch, {"status": "ok", "val/ppl": 3.0})
    with pytest.raises(OSError):
        job.main_task(config(run))


# The summary follows task.summary ----------------------------------------------------------------------
METRICS = {"status": "ok", "val/ppl": 5.5, "val/loss": 1.7, "train/ppl": 6.0, "test/ppl": 5.9, "epochs": 2,
           "tokens_per_s": 900.0, "global_step": 40, "sample": "time traveller"}


@pytest.mark.parametrize("updates, shown", [
    ({}, {"val/ppl": 5.5, "val/loss": 1.7, "train/ppl": 6.0, "epochs": 2, "tokens_per_s": 900.0}),  # conf/task/lm.yaml
    ({"task__summary": ["epochs", "test/*"]}, {"test/ppl": 5.9, "epochs": 2}),  # the run's order, not the patterns'
    ({"task__summary": ["global_step"]}, {"global_step": 40}),
    ({"task__summary": None}, {"val/ppl": 5.5, "val/loss": 1.7, "epochs": 2}),  # none named: job.DEFAULT_SUMMARY
])
def test_the_summary_shows_what_task_summary_names(tmp_path, caplog, monkeypatch, updates, shown):
    ending(monkeypatch, METRICS)
    with caplog.at_level("INFO", logger="rnnlab.run.job"):
        job.main_task(config(tmp_path / "run", **updates))
    finals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("final: ")]
    assert finals == [f"final: {json.dumps(shown)}"]
    assert record(tmp_path / "run") == METRICS  # metrics.json keeps everything


def test_the_forecast_summary_is_the_tasks():
    cfg = config(Path("/unused"), "forecast")
    notes = job.summary_notes({"status": "ok", "val/mse": 0.1, "val/mase": 0.9, "test/mse_k4": 0.2,
                               "test/mse_clean_k4": 0.3, "test/ar_mase_k4": 1.1, "train/mse": 0.1, "epochs": 3},
                              cfg, Path("/tmp/unused"))
    assert notes[0] == ('final: {"val/mse": 0.1, "val/mase": 0.9, "test/mse_k4": 0.2, "test/ar_mase_k4": 1.1, '
                        '"epochs": 3}')


def test_a_summary_that_is_not_a_list_of_names_is_refused_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        job.main_task(config(run, task__summary="val/ppl"))
    line = one_error_line(capsys.readouterr().err)
    assert info.value.code == 2 and line == ("error: task.summary='val/ppl' is invalid: must be a list of metric "
                                             "names or patterns (e.g. [val/*, epochs])")
    assert not (run / "checkpoints").exists()


def test_a_real_run_summarises_what_task_summary_names(tmp_path, caplog):
    """One tiny epoch through the real job: the line shows task.summary's metrics, metrics.json all of
    them, and the sweeper's value is the optimized metric."""
    run = tmp_path / "run"
    cfg = config(run, trainer__max_epochs=1, data__max_tokens=2000, task__summary=["epochs", "val/ppl"])
    with caplog.at_level("INFO", logger="rnnlab.run.job"):
        value = job.main_task(cfg)
    metrics = record(run)
    assert metrics["status"] == "ok" and value == metrics["val/ppl"] and "train/ppl" in metrics
    finals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("final: ")]
    assert finals == [f"final: {json.dumps({'val/ppl': metrics['val/ppl'], 'epochs': 1})}"]


@pytest.mark.slow  # two process runs; the default suite has the same rows in process
def test_real_command_summary_and_refusal(tmp_path):
    """train.py itself: the summary line follows task.summary on stdout; a bad one is one line, exit 2."""
    import subprocess
    import sys

    from conftest import TINY

    def train(run, *overrides):
        return subprocess.run([sys.executable, "train.py", *TINY, "trainer.max_epochs=1", "data.max_tokens=2000",
                               f"hydra.run.dir={run}", *overrides], cwd=ROOT, capture_output=True, text=True)

    proc = train(tmp_path / "ok", "task.summary=[epochs]")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert [line.split(" - ", 1)[1] for line in proc.stdout.splitlines() if " - final: " in line] == [
        'final: {"epochs": 1}']
    proc = train(tmp_path / "bad", "task.summary=val/ppl")
    assert proc.returncode == 2 and one_error_line(proc.stderr).startswith("error: task.summary='val/ppl' is invalid")
    assert record(tmp_path / "bad")["status"] == "config_error"


# eval.py ends the same way -------------------------------------------------------------------------------
def compose_eval(output_dir: Path, *overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("eval", overrides=[f"paths.output_dir={output_dir}", "~logger", *overrides])


def test_a_refused_evaluation_ends_through_finish_and_records_nothing(tmp_path, capsys, finished):
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as info:
        eval_job.main_eval(compose_eval(out, f"ckpt_path={tmp_path / 'missing.ckpt'}"))
    assert info.value.code == 2 and "is not a file" in one_error_line(capsys.readouterr().err)
    assert not (out / "metrics.json").exists()
    assert [(r.status, r.write) for r in finished] == [("config_error", False)]


def test_an_evaluation_ends_through_finish(tmp_path, capsys, caplog, monkeypatch, finished):
    out = tmp_path / "eval"
    scores = {"status": "ok", "task": "lm", "checkpoint": str(tmp_path / "x.ckpt"), "val/ppl": 3.5, "test/ppl": 3.7,
              "sample/greedy": "the time", "seconds": 0.5}
    monkeypatch.setattr(eval_job, "evaluate_checkpoint", lambda cfg: RunResult("ok", scores, value=3.5))
    with caplog.at_level("INFO", logger="rnnlab.run.eval_job"):
        assert eval_job.main_eval(compose_eval(out, "ckpt_path=x.ckpt")) == 3.5
    assert record(out) == scores and capsys.readouterr().err == ""
    notes = [r.getMessage() for r in caplog.records if r.name == "rnnlab.run.eval_job"]
    assert notes == ['scores: {"val/ppl": 3.5, "test/ppl": 3.7}', "sample/greedy: the time", f"run directory: {out}"]
    assert [r.status for r in finished] == ["ok"]


@pytest.mark.parametrize("task, updates, metric", [("lm", {}, "val/ppl"), ("forecast", {}, "val/mase"),
                                                   ("lm", {"optimized_metric": "val/loss"}, "val/loss")])
def test_an_evaluation_returns_what_its_training_run_optimised(task, updates, metric):
    run_cfg = config(Path("/unused"), task, **updates)
    saved = OmegaConf.create(OmegaConf.to_yaml(run_cfg))  # as .hydra/config.yaml holds it: interpolations kept
    assert eval_job.objective(saved) == metric
    assert eval_job.objective(OmegaConf.create({"data": {}})) is None  # a config without either


# Before any run exists: the same line and exit status, nothing recorded ------------------------------------
def test_a_refused_run_directory_ends_with_the_same_exit_status(tmp_path, capsys):
    from rnnlab.run.rundir import RunDirectoryGuard

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text('{"status": "ok"}')
    config = OmegaConf.create({"hydra": {"run": {"dir": str(taken)}, "job": {"config_name": "train"}},
                               "ckpt_path": None})
    with pytest.raises(SystemExit) as info:
        RunDirectoryGuard().on_run_start(config)
    assert info.value.code == EXIT_CODES["config_error"] == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: hydra.run.dir={str(taken)!r} holds the results of another run (metrics.json: status ok): give "
        "another directory, or resume it with ckpt_path=last")
    assert json.loads((taken / "metrics.json").read_text()) == {"status": "ok"}


def test_a_command_ends_with_the_statuses_a_run_ends_with(capsys):
    from rnnlab.cli.common import run

    def refused():
        raise ConfigError("x=1 is invalid: must be 2")

    def stopped():
        raise KeyboardInterrupt

    assert run(refused) == EXIT_CODES["config_error"]
    assert capsys.readouterr().err == "error: x=1 is invalid: must be 2\n"
    assert run(stopped) == EXIT_CODES["interrupted"]
    assert capsys.readouterr().err == "interrupted by SIGINT during start-up\n"
    assert end_before_run("config_error", "error: y") == 2 and capsys.readouterr().err == "error: y\n"


# One writer, one exit -----------------------------------------------------------------------------------
def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _enclosing_function(path: Path, lineno: int) -> str:
    functions = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)]
    return next(f.name for f in sorted(functions, key=lambda f: -f.lineno) if f.lineno <= lineno <= f.end_lineno)


def test_metrics_json_has_one_writer_and_one_caller():
    """Every write of a file that names metrics goes through outputs.write_metrics, called by finish alone."""
    sources = [*SRC.rglob("*.py"), ROOT / "train.py", ROOT / "eval.py"]
    writes = {(p.relative_to(ROOT).as_posix(), _enclosing_function(p, node.lineno))
              for p in sources for node, func in _calls(p)
              if func.split(".")[-1] in ("write_text", "write_bytes", "dump", "open", "write_metrics")
              and "metric" in ast.unparse(node).lower()}
    assert writes == {("src/rnnlab/run/outputs.py", "write_metrics"), ("src/rnnlab/run/result.py", "finish")}


def test_runs_print_and_exit_in_one_place():
    """In rnnlab.run, only result.py prints and exits; the run-directory guard exits before a run exists."""
    found = {(p.name, func) for p in (SRC / "run").glob("*.py") for node, func in _calls(p)
             if func in ("print", "sys.exit", "exit")}
    assert found == {("result.py", "print"), ("result.py", "sys.exit"), ("rundir.py", "sys.exit")}


def test_every_status_has_an_exit_status():
    assert {s: EXIT_CODES[s] for s in ("ok", "debug", "tuned", "finished")} == dict.fromkeys(
        ("ok", "debug", "tuned", "finished"), 0)
    assert EXIT_CODES["config_error"] == 2
    assert {EXIT_CODES[s] for s in ("diverged", "checkpoint_error", "interrupted")} == {1}
    assert RunResult("diverged").exit_code == 1
