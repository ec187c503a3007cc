"""Issue 26, evaluations: eval.py never writes into another run's directory (one guard, rnnlab.run.rundir,
for train.py and eval.py), writes to outputs/eval/ and leaves no directory when it fails, refuses a forecast
data file whose columns are not the trained ones; the installed commands carry their configs; the entry
points import torch and Lightning only when a run starts."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import CONF, ROOT, TINY, compose_config, one_error_line
from rnnlab.configs import CONF_DIR
from rnnlab.errors import ConfigError
from rnnlab.run import rundir

ENV = dict(os.environ, HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="1")


def command(script: str, *args: str, cwd: Path = ROOT, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (hidden ones too) with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def compose_eval(out: Path, *overrides: str, hydra_config: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("eval", return_hydra_config=hydra_config,
                       overrides=[f"paths.output_dir={out}", "trainer.accelerator=cpu",
                                  "trainer.enable_progress_bar=false", *overrides])


def fake_training_run(run: Path, status: str = "ok") -> Path:
    """What train.py leaves: its saved config, a checkpoint and metrics.json."""
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\ndata: {}\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / "metrics.json").write_text(json.dumps({"status": status, "val/ppl": 5.0}) + "\n")
    return run


# 1. One guard: never write into another run's directory ------------------------------------------------
def saved_by(run: Path, config_name: str) -> Path:
    """A directory whose .hydra/hydra.yaml says which command's config made it."""
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save({"hydra": {"job": {"config_name": config_name}}}, run / ".hydra" / "hydra.yaml")
    return run


@pytest.mark.parametrize("make, resume, fresh_only, config_name, refused", [
    # an evaluation (fresh_only) shares no directory: results of any status, checkpoints, a saved config
    (lambda d: fake_training_run(d), False, True, "eval",
     r"holds the results of another run \(metrics.json: status ok\): give another directory$"),
    (lambda d: fake_training_run(d, "config_error"), False, True, "eval",
     r"holds the results of another run \(metrics.json: status config_error\)"),
    (lambda d: (d / "checkpoints").mkdir(parents=True) or (d / "checkpoints" / "a.ckpt").write_bytes(b"x"), False,
     True, "eval", r"holds the checkpoints of another run \(checkpoints\)"),
    (lambda d: saved_by(d, "eval"), False, True, "eval", r"holds another run's config \(.hydra\)"),
    (lambda d: saved_by(d / "0", "train"), False, True, "eval", r"holds another run's config \(0/.hydra\)"),
    # train.py: a directory another command made is not its to resume, nor to reuse
    (lambda d: saved_by(d, "eval"), True, False, "train",
     r"holds a run of eval.py \(.hydra/hydra.yaml\), not of train.py: give another directory$"),
    (lambda d: fake_training_run(saved_by(d, "eval")), False, False, "train",
     r"holds the results of another run \(metrics.json: status ok\): give another directory$"),
    # what train.py may still do: resume its own run, reuse its own refused run's directory
    (lambda d: fake_training_run(saved_by(d, "train")), True, False, "train", None),
    (lambda d: saved_by(d, "train").joinpath("metrics.json").write_text('{"status": "config_error"}'), False, False,
     "train", None),
    (lambda d: d.mkdir(), False, True, "eval", None),  # an empty directory
    (lambda d: (d / ".hydra").mkdir(parents=True) or (d / ".hydra" / "hydra.yaml").write_text("a: 1\n"), True,
     False, "train", None),  # a hydra.yaml that names no config is nobody's
])
def test_claim_refuses_another_runs_directory(tmp_path, make, resume, fresh_only, config_name, refused):
    run = tmp_path / "run"
    make(run)
    before = snapshot(run)
    if refused is None:
        rundir.release(run, rundir.claim(run, "hydra.run.dir", resume, fresh_only, config_name))
    else:
        with pytest.raises(ConfigError) as info:
            rundir.claim(run, "hydra.run.dir", resume, fresh_only, config_name)
        assert re.search(refused, str(info.value)) and str(info.value).startswith(f"hydra.run.dir='{run}' ")
    assert snapshot(run) == before  # nothing written, the lock file gone


def test_eval_into_a_training_runs_directory_is_refused_untouched(tmp_path):
    """The reported command: Hydra would write .hydra/ before the task, so the guard refuses first."""
    run = fake_training_run(tmp_path / "run")
    before = snapshot(run)
    proc = command("eval.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run}")
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (f"error: hydra.run.dir='{run}' holds the results of another run "
                                           "(metrics.json: status ok): give another directory")
    assert snapshot(run) == before


def test_the_guard_reads_the_rank_from_the_variables_compat_names():
    """The guard skips importing Lightning when none of them is set (tests/test_compat.py checks that they
    are the ones Lightning reads)."""
    from rnnlab import compat

    assert rundir.RANK_VARIABLES is compat.RANK_VARIABLES


# 2. Where eval.py writes, and a failed eval leaves no directory ----------------------------------------------
def test_eval_config_writes_to_outputs_eval_with_its_own_guard_and_trainer_settings(tmp_path):
    cfg = compose_eval(tmp_path, "ckpt_path=x.ckpt", hydra_config=True)
    assert re.fullmatch(r"outputs/eval/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", cfg.hydra.run.dir)
    assert cfg.hydra.sweep.dir.startswith("outputs/eval/multiruns/")
    guard = cfg.hydra.callbacks.run_directory
    assert guard._target_ == "rnnlab.run.rundir.RunDirectoryGuard" and guard.fresh_only and guard.discard_unused
    assert cfg.trainer.enable_checkpointing is False  # eval.yaml's own value, not trainer/default's


def test_discard_if_unused(tmp_path):
    """Only a directory the run created and left with Hydra's own files goes, with the parents it created."""
    made = tmp_path / "outputs"
    run = made / "eval" / "t"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("a: 1\n")
    (run / "eval.log").write_text("a line\n")
    (run / rundir.LOCK_FILE).write_text("1\n")
    assert rundir.discard_if_unused(run, made, "eval") and not made.exists() and tmp_path.exists()

    (run / ".hydra").mkdir(parents=True)
    (made / "other").mkdir()  # another run's, in a parent this one created
    assert rundir.discard_if_unused(run, made, "eval") and not (made / "eval").exists() and (made / "other").is_dir()

    (run / ".hydra").mkdir(parents=True)
    (run / "metrics.json").write_text("{}")  # a result: kept
    assert not rundir.discard_if_unused(run, made, "eval") and (run / "metrics.json").is_file()
    (run / "metrics.json").unlink()
    (run / "train.log").write_text("")  # another job's log is not eval's own
    assert not rundir.discard_if_unused(run, made, "eval") and (run / "train.log").is_file()


@pytest.mark.parametrize("result", [None, "metrics.json"])
def test_guard_of_eval_removes_the_directory_a_failed_eval_made(tmp_path, result):
    """The guard as Hydra drives it (conf/eval.yaml's callback): the run directory and the parents it
    made are gone after a run that wrote nothing but Hydra's own files; a result keeps them."""
    from hydra.utils import instantiate

    run = tmp_path / "logs" / "eval" / "t"
    cfg = compose_eval(run, "ckpt_path=x.ckpt", f"hydra.run.dir={run}", hydra_config=True)
    guard = instantiate(cfg.hydra.callbacks.run_directory)
    guard.on_run_start(config=cfg)
    assert (run / rundir.LOCK_FILE).is_file()
    (run / ".hydra").mkdir()  # what Hydra writes before the task
    (run / ".hydra" / "config.yaml").write_text("a: 1\n")
    (run / f"{cfg.hydra.job.name}.log").write_text("")
    if result:
        (run / result).write_text("{}")
    guard.on_run_end(config=cfg)
    assert sorted(tmp_path.iterdir()) == ([tmp_path / "logs"] if result else [])
    assert not (run / rundir.LOCK_FILE).exists()


@pytest.mark.slow
def test_process_failed_eval_leaves_no_directory(tmp_path):
    """A missing checkpoint, with the default run directory under paths.log_dir: none of the directories
    Hydra made is left, and the one line is the task's."""
    proc = command("eval.py", f"ckpt_path={tmp_path / 'missing.ckpt'}", f"paths.log_dir={tmp_path / 'logs'}")
    assert proc.returncode == 2
    assert "missing.ckpt' is not a file" in one_error_line(proc.stderr)
    assert sorted(tmp_path.iterdir()) == []


# 3. A forecast checkpoint on a data file with other columns ----------------------------------------------------
def write_series(path: Path, columns: list[str], rows: int = 200, seed: int = 0) -> Path:
    values = np.cumsum(np.random.default_rng(seed).normal(size=(rows, len(columns))), 0) + 50
    lines = [",".join(columns)] + [",".join(f"{v:.4f}" for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory):
    """A forecaster trained one epoch on columns a, b, saved as train.py saves a run (.hydra/config.yaml)."""
    from rnnlab.run.job import main_task

    root = tmp_path_factory.mktemp("forecast")
    files = {name: write_series(root / f"{name}.csv", list(name), seed=i)
             for i, name in enumerate(["ab", "cd", "a", "ba", "abc"])}
    cfg = compose_config(root / "run", "task=forecast", "data=series", f"data.path={files['ab']}", "model=gru",
                         "model.hidden_size=8", "trainer.max_epochs=1", tiny=False)
    (root / "run" / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, root / "run" / ".hydra" / "config.yaml")
    main_task(cfg)
    return root / "run" / "checkpoints" / "last.ckpt", files


@pytest.mark.parametrize("name, differ, fix", [
    ("cd", "missing: a, b; extra: c, d", "give a file with those columns"),
    ("a", "missing: b", "give a file with those columns"),  # was an IndexError traceback
    ("ba", "in another order", "choose them with +data.columns=[a,b]"),
])
def test_eval_refuses_data_with_other_columns(forecaster, tmp_path, capsys, name, differ, fix):
    from rnnlab.run.eval_job import main_eval

    ckpt, files = forecaster
    cfg = compose_eval(tmp_path / "eval", f"ckpt_path={ckpt}", f"+data.path={files[name]}")
    with pytest.raises(SystemExit) as exit_info:
        main_eval(cfg)
    have = ", ".join(name)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: data.path='{files[name]}' is invalid: the checkpoint was trained on the columns a, b, this data "
        f"has {have} ({differ}): {fix}"]
    assert not (tmp_path / "eval").exists()  # nothing written


def test_eval_scores_other_data_with_the_trained_columns(forecaster, tmp_path, capsys):
    """A file with a column more: refused, and the hint works (the trained columns chosen)."""
    from rnnlab.run.eval_job import main_eval

    ckpt, files = forecaster
    with pytest.raises(SystemExit):
        main_eval(compose_eval(tmp_path / "wide", f"ckpt_path={ckpt}", f"+data.path={files['abc']}"))
    assert capsys.readouterr().err.strip().endswith("this data has a, b, c (extra: c): choose them with "
                                                    "+data.columns=[a,b]")
    main_eval(compose_eval(tmp_path / "wide", f"ckpt_path={ckpt}", f"+data.path={files['abc']}", "+data.columns=[a,b]"))
    metrics = json.loads((tmp_path / "wide" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["val/mse"] > 0


@pytest.mark.slow
def test_process_eval_of_a_file_with_fewer_columns_is_one_line(forecaster, tmp_path):
    ckpt, files = forecaster
    proc = command("eval.py", f"ckpt_path={ckpt}", f"+data.path={files['a']}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 2
    assert one_error_line(proc.stderr).endswith("this data has a (missing: b): give a file with those columns")
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_process_eval_writes_its_own_directory_and_train_cannot_take_it(forecaster, tmp_path):
    ckpt, _ = forecaster
    proc = command("eval.py", f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path / 'logs'}",
                   "trainer.enable_progress_bar=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "eval").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", run.name)
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    assert not (run / "checkpoints").exists()
    before = snapshot(run)
    proc = command("train.py", *TINY, "ckpt_path=last", f"hydra.run.dir={run}")  # a resume is no way in either
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (f"error: hydra.run.dir='{run}' holds a run of eval.py "
                                           "(.hydra/hydra.yaml), not of train.py: give another directory")
    assert snapshot(run) == before


# 5. The installed commands carry their configs ----------------------------------------------------------------
def test_the_package_configs_are_the_repository_conf():
    """src/rnnlab/conf links to conf/ (the one users edit); the wheel copies it (package-data)."""
    assert (ROOT / "src" / "rnnlab" / "conf").is_symlink() and CONF_DIR == CONF.resolve()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "conf/**/*.yaml" in package_data["rnnlab"]


@pytest.mark.slow
def test_wheel_commands_work_from_any_directory(tmp_path):
    """A wheel installed in a fresh environment (torch and the rest from the system's site-packages):
    rnnlab-eval and rnnlab-zipf from a directory that is not a checkout."""
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the working tree
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "outputs", "build", "*.egg-info", "__pycache__", ".pytest_cache", "multirun", "lightning_logs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(tmp_path / "wheel"),
                    "-q"], check=True, capture_output=True, timeout=600)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("rnnlab-*.whl")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(tool, *args):
        return subprocess.run([venv / "bin" / tool, *args], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                              env=ENV)

    where = subprocess.run([venv / "bin" / "python", "-c", "import rnnlab.configs as c; print(c.CONF_DIR)"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv) and (Path(where) / "eval.yaml").is_file()
    proc = run("rnnlab-eval", "--help")
    assert proc.returncode == 0 and "== Config ==" in proc.stdout and "ckpt_path: ???" in proc.stdout
    proc = run("rnnlab-eval", f"ckpt_path={tmp_path / 'missing.ckpt'}")  # the config composed, the task ran
    assert proc.returncode == 2 and "missing.ckpt' is not a file" in one_error_line(proc.stderr)
    proc = run("rnnlab-zipf", "data.max_tokens=3000", "--top", "2", "--out", str(tmp_path / "zipf"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "zipf" / "zipf.png").is_file() and "top 1-grams" in proc.stdout
    assert sorted(p.name for p in elsewhere.iterdir()) == []


# 6. The declared Python and numpy ------------------------------------------------------------------------------
def test_declared_python_and_numpy():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"  # hashlib.file_digest
    numpy = [d for d in project["dependencies"] if re.match(r"numpy\b", d)]
    assert numpy == ["numpy>=2.0"]


# 7. --help and tab completion start without torch and Lightning -------------------------------------------
HELP_PATHS = """
import contextlib, io, os, runpy, sys
os.environ["COMP_LINE"] = "python train.py trainer.max_ep"
for argv in (["train.py", "--help"], ["eval.py", "--help"], ["train.py", "-sc", "query=bash"],
             ["rnnlab.cli.eval", "--help"]):
    sys.argv, out = list(argv), io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            if argv[0].endswith(".py"):
                runpy.run_path(argv[0], run_name="__main__")
            else:
                runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert e.code in (0, None), (argv, e.code)
    assert out.getvalue().strip(), argv
    print(argv[0], argv[1], len(out.getvalue()))
print("heavy:", sorted(m for m in ("torch", "lightning") if m in sys.modules))
"""


def test_help_and_completion_import_no_torch_or_lightning():
    proc = subprocess.run([sys.executable, "-c", HELP_PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "heavy: []"
    assert len(proc.stdout.splitlines()) == 5


def test_a_constant_extra_column_names_the_trained_columns_to_choose(forecaster, tmp_path, capsys):
    """The data set refuses the file for its constant extra column; the line also says which columns the
    checkpoint scores and how to choose them (the user gave no data.columns)."""
    from rnnlab.run.eval_job import main_eval

    ckpt, files = forecaster
    rows = files["ab"].read_text().splitlines()
    flat = tmp_path / "flat.csv"
    flat.write_text("\n".join([rows[0] + ",c"] + [r + ",1.0" for r in rows[1:]]) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main_eval(compose_eval(tmp_path / "eval", f"ckpt_path={ckpt}", f"+data.path={flat}"))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "constant" in line
    assert line.endswith("; the checkpoint was trained on the columns a, b: evaluate them with +data.columns=[a,b]")
