"""Issue 26, relocatable runs: every path a run records is relative to the file that records it, so a moved
or copied run or multirun names its own files; rnnlab-ensemble scores only a sweep's own checkpoints and
refuses (or with --skip-damaged leaves out, and says so) a damaged one; a damaged corpus-cache entry is
discarded with a warning and rebuilt, never trained on."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, TINY, compose_config
from rnnlab.cli.ensemble import main as ensemble_main
from rnnlab.data import cache
from rnnlab.data.corpus import load_ids
from rnnlab.run.job import main_task
from rnnlab.run.outputs import portable_paths, read_metrics, recorded_path, write_metrics

ENSEMBLE = ["--lr", "0", "--device", "cpu"]


class Records(logging.Handler):
    """The messages of one logger, for a module-scoped fixture (caplog is per test)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def corrupt_in_place(npy: Path) -> None:
    """Overwrite the last ids of a cache entry with 255 (outside any small vocabulary), keeping its size."""
    size = npy.stat().st_size
    with open(npy, "r+b") as f:
        f.seek(size - 16)
        f.write(b"\xff" * 16)
    assert npy.stat().st_size == size


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A multirun-like directory of two tiny trained jobs sharing a corpus cache (built by job 0); before job 1
    trains, ids of the cache entry are overwritten in place. Job 1 must rebuild the entry, not train on it."""
    root = tmp_path_factory.mktemp("relpaths")
    records = Records()
    logger = logging.getLogger("rnnlab.data.cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cache, "MIN_BYTES", 0)  # cache even the tiny test corpus
        logger.addHandler(records)
        try:
            for job in (0, 1):
                if job == 1:
                    (entry,) = (root / "cache").glob("*.npy")
                    corrupt_in_place(entry)
                cfg = compose_config(root / "sweep" / str(job), "trainer.max_epochs=1", f"seed={job + 1}",
                                     f"data.cache_dir={root / 'cache'}")
                main_task(cfg)
                hydra = root / "sweep" / str(job) / ".hydra"
                hydra.mkdir()
                OmegaConf.save(cfg, hydra / "config.yaml")
                (hydra / "overrides.yaml").write_text(f"- seed={job + 1}\n")
        finally:
            logger.removeHandler(records)
    return {"root": root, "sweep": root / "sweep", "entry": entry, "warnings": records.messages}


def moved(sweep, tmp_path) -> Path:
    """A copy of the sweep, moved to a new place: the original is gone, as after `mv`."""
    original = tmp_path / "original"
    shutil.copytree(sweep["sweep"], original)
    shutil.move(original, tmp_path / "moved")
    assert not original.exists()
    return tmp_path / "moved"


def ensemble(capsys, *args):
    capsys.readouterr()
    code = ensemble_main([*map(str, args), *ENSEMBLE])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


# Row 2: relative paths in what a run writes ----------------------------------------------------------------
def test_metrics_json_names_the_runs_checkpoint_relative_to_itself(sweep, tmp_path):
    for job in ("0", "1"):
        metrics = json.loads((sweep["sweep"] / job / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["best_checkpoint"] == "checkpoints/best-epoch000.ckpt"
    # Readers get it resolved against metrics.json's directory, wherever that is now.
    sweep_dir = moved(sweep, tmp_path)
    assert read_metrics(sweep_dir / "1" / "metrics.json")["best_checkpoint"] == str(
        sweep_dir / "1" / "checkpoints" / "best-epoch000.ckpt")


def test_write_metrics_makes_every_path_inside_the_run_relative_and_others_absolute(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    record = {"status": "interrupted", "checkpoint": str(run / "checkpoints" / "interrupted.ckpt"),
              "last_good_checkpoint": "run/checkpoints/last.ckpt",  # relative to the working directory
              "best_checkpoint": str(run / "checkpoints" / ".." / "checkpoints" / "best.ckpt"),
              "lr_find/plot": run / "lr_find.png", "elsewhere": Path("other") / "x.ckpt",
              "sample": "run/checkpoints/not a path", "empty": None}
    before = dict(record)
    written = json.loads(write_metrics(run, record).read_text())
    assert record == before  # the caller's values (printed for the user to paste) stay absolute
    assert written == {"status": "interrupted", "checkpoint": "checkpoints/interrupted.ckpt",
                       "last_good_checkpoint": "checkpoints/last.ckpt", "best_checkpoint": "checkpoints/best.ckpt",
                       "lr_find/plot": "lr_find.png", "elsewhere": str(tmp_path / "other" / "x.ckpt"),
                       "sample": "run/checkpoints/not a path", "empty": None}
    # Read back: relative paths against the file's directory (whatever the working directory), an older
    # metrics.json's absolute ones as they are, other values untouched.
    monkeypatch.chdir(run)
    assert read_metrics(run / "metrics.json") == {**written,
                                                  "checkpoint": str(run / "checkpoints" / "interrupted.ckpt"),
                                                  "last_good_checkpoint": str(run / "checkpoints" / "last.ckpt"),
                                                  "best_checkpoint": str(run / "checkpoints" / "best.ckpt"),
                                                  "lr_find/plot": str(run / "lr_find.png")}
    assert recorded_path(run / "metrics.json", "/abs/best.ckpt") == Path("/abs/best.ckpt")


def test_a_path_through_a_symlinked_run_directory_is_relative_too(tmp_path):
    (tmp_path / "real" / "checkpoints").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert portable_paths(tmp_path / "link", {"checkpoint": str(tmp_path / "real" / "checkpoints" / "a.ckpt")}) == {
        "checkpoint": "checkpoints/a.ckpt"}


# Row 1: rnnlab-ensemble on a moved sweep, damaged members ---------------------------------------------------
def test_a_moved_sweep_is_scored_from_its_own_checkpoints(sweep, tmp_path, capsys):
    sweep_dir = moved(sweep, tmp_path)
    code, out, err = ensemble(capsys, sweep_dir)
    assert code == 0 and not err
    report = json.loads((sweep_dir / "ensemble.json").read_text())
    assert report["members"] == 2 and "left_out" not in report
    assert report["checkpoints"] == ["0/checkpoints/best-epoch000.ckpt", "1/checkpoints/best-epoch000.ckpt"]
    assert out.startswith("ensemble of 2: ") and not list(sweep_dir.glob("ensemble.json.*"))


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_member_is_refused_naming_the_job_and_its_file(sweep, tmp_path, capsys, damage):
    sweep_dir = moved(sweep, tmp_path)
    ckpt = sweep_dir / "1" / "checkpoints" / "best-epoch000.ckpt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    else:
        ckpt.unlink()
    code, out, err = ensemble(capsys, sweep_dir)
    problem = (r"is not a readable checkpoint \(\w+\): it is truncated, corrupt or not a PyTorch file"
               if damage == "truncated" else "is missing")
    assert code == 2 and not out and len(err) == 1 and re.fullmatch(
        rf"error: sweep_dir='{re.escape(str(sweep_dir))}' has damaged members \(job 1: best_checkpoint="
        rf"'{re.escape(str(ckpt))}' {problem}\): retrain those jobs, or score the others with --skip-damaged",
        err[0]), err
    assert not (sweep_dir / "ensemble.json").exists()
    # --skip-damaged: the ensemble of the others, and the job left out is named (stdout and ensemble.json).
    code, out, err = ensemble(capsys, sweep_dir, "--skip-damaged")
    report = json.loads((sweep_dir / "ensemble.json").read_text())
    assert code == 0 and not err and report["members"] == 1
    assert report["checkpoints"] == ["0/checkpoints/best-epoch000.ckpt"] and list(report["left_out"]) == ["1"]
    assert re.search(rf"; job 1 left out: best_checkpoint='{re.escape(str(ckpt))}' {problem}$", out.splitlines()[0])


def test_an_older_sweeps_absolute_paths_are_taken_inside_the_copy_never_from_the_original(sweep, tmp_path, capsys):
    """metrics.json written by an older rnnlab names checkpoints absolutely, where the job ran: in a copy of
    the sweep they are looked up in the copy (Hydra's recorded output_dir says where the job ran)."""
    original = tmp_path / "original"
    shutil.copytree(sweep["sweep"], original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    for job in ("0", "1"):
        metrics = json.loads((copy / job / "metrics.json").read_text())
        metrics["best_checkpoint"] = str(original / job / metrics["best_checkpoint"])
        (copy / job / "metrics.json").write_text(json.dumps(metrics))
        hydra_record = {"hydra": {"runtime": {"output_dir": str(original / job)}}}
        OmegaConf.save(hydra_record, copy / job / ".hydra" / "hydra.yaml")
    code, _, err = ensemble(capsys, copy)
    assert code == 0 and not err
    assert json.loads((copy / "ensemble.json").read_text())["checkpoints"] == [
        "0/checkpoints/best-epoch000.ckpt", "1/checkpoints/best-epoch000.ckpt"]
    ckpt = copy / "1" / "checkpoints" / "best-epoch000.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # the original's file is whole: it must not stand in
    code, _, err = ensemble(capsys, copy)
    assert code == 2 and len(err) == 1 and f"job 1: best_checkpoint='{ckpt}' is not a readable checkpoint" in err[0]
    # Without Hydra's record, an absolute path outside the job's directory is refused, not followed.
    (copy / "1" / ".hydra" / "hydra.yaml").unlink()
    code, _, err = ensemble(capsys, copy)
    outside = original / "1" / "checkpoints" / "best-epoch000.ckpt"
    assert code == 2 and len(err) == 1 and (
        f"job 1: best_checkpoint='{outside}' lies outside the job's directory '{copy / '1'}'" in err[0])


def test_a_sweep_whose_every_member_is_damaged_is_refused_even_when_skipping(sweep, tmp_path, capsys):
    sweep_dir = moved(sweep, tmp_path)
    for job in ("0", "1"):
        (sweep_dir / job / "checkpoints" / "best-epoch000.ckpt").unlink()
    code, out, err = ensemble(capsys, sweep_dir, "--skip-damaged")
    assert code == 2 and not out and len(err) == 1
    assert re.fullmatch(r"error: sweep_dir='.*' has damaged members \(job 0: .* is missing, job 1: .* is missing\): "
                        r"retrain them", err[0]), err


# Row 3: a damaged corpus-cache entry -----------------------------------------------------------------------
def test_a_cache_entry_with_ids_overwritten_in_place_is_rebuilt_before_training(sweep):
    """Job 1 trained after the entry's ids were overwritten (same size): a warning named the entry, the
    entry was rebuilt, the run succeeded on the same corpus as job 0 (same vocabulary: their ensemble scores)."""
    entry = sweep["entry"]
    (warning,) = [m for m in sweep["warnings"] if "damaged" in m]
    assert warning == (f"corpus cache entry {entry.with_suffix('')} is damaged (the ids do not match their "
                       "checksum): discarded, the corpus is tokenized again")
    assert read_metrics(sweep["sweep"] / "1" / "metrics.json")["status"] == "ok"
    assert np.load(entry).max() < 30  # the rebuilt entry's ids lie inside the book's 28-token vocabulary


@pytest.mark.parametrize("damage", ["ids", "vocabulary", "header", "ids and checksum"])
def test_a_damaged_cache_entry_is_discarded_with_a_warning_and_rebuilt(tmp_path, monkeypatch, caplog, damage):
    monkeypatch.setattr(cache, "MIN_BYTES", 0)
    p = tmp_path / "c.txt"
    p.write_text("the time machine by h g wells " * 40, encoding="utf-8")
    ids, vocab = load_ids(p, "char", cache_dir=tmp_path / "cache")
    (npy,) = (tmp_path / "cache").glob("*.npy")
    meta_file = npy.with_suffix(".json")
    if damage == "ids":
        corrupt_in_place(npy)
    elif damage == "vocabulary":  # still valid JSON, of the same length
        meta_file.write_text(meta_file.read_text(encoding="utf-8").replace('"t"', '"T"', 1), encoding="utf-8")
    elif damage == "header":
        npy.write_bytes(b"\x93NUMPY broken" + npy.read_bytes()[13:])
    else:  # ids outside the vocabulary under a checksum that matches them: the range check catches it
        corrupt_in_place(npy)
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        meta["ids"] = cache.file_checksum(npy)
        meta_file.write_text(json.dumps(meta), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rnnlab.data.cache"):
        again, vocab2 = load_ids(p, "char", cache_dir=tmp_path / "cache")
    assert np.array_equal(again, ids) and vocab2.idx_to_token == vocab.idx_to_token
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"corpus cache entry {npy.with_suffix('')} is damaged (")
    assert message.endswith("): discarded, the corpus is tokenized again")
    caplog.clear()
    hit = cache.load(tmp_path / "cache", npy.stem)  # rewritten whole: a hit, without a warning
    assert hit is not None and np.array_equal(hit[0], ids) and not caplog.records


# The real commands -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_moved_multirun_is_scored_by_rnnlab_ensemble_and_a_truncated_member_refused(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", "-m", *TINY, "trainer.max_epochs=1", "seed=1,2",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((sweep / "0" / "metrics.json").read_text())["best_checkpoint"] == "checkpoints/best-epoch000.ckpt"
    shutil.move(sweep, tmp_path / "moved")
    sweep = tmp_path / "moved"
    command = [sys.executable, "-m", "rnnlab.cli.ensemble", str(sweep), *ENSEMBLE]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    assert json.loads((sweep / "ensemble.json").read_text())["members"] == 2
    ckpt = sweep / "0" / "checkpoints" / "best-epoch000.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: sweep_dir='{sweep}' has damaged members (job 0: best_checkpoint='{ckpt}' "
                                  "is not a readable checkpoint")


@pytest.mark.slow
def test_train_py_rebuilds_a_damaged_cache_entry(tmp_path):
    """A corpus of 1 MiB (cached by default): the second run finds the entry's ids overwritten, says so on
    its log, rebuilds the entry and trains."""
    corpus = tmp_path / "big.txt"
    corpus.write_text((ROOT / "src" / "rnnlab" / "data" / "timemachine.txt").read_text(encoding="utf-8") * 7,
                      encoding="utf-8")
    assert corpus.stat().st_size >= cache.MIN_BYTES
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def train(name):
        return subprocess.run([sys.executable, "train.py", *TINY, "trainer.max_epochs=1", f"data.path={corpus}",
                               f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / name}"],
                              cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)

    assert train("a").returncode == 0
    (npy,) = (tmp_path / "cache").glob("*.npy")
    corrupt_in_place(npy)
    proc = train("b")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    assert f"corpus cache entry {npy.with_suffix('')} is damaged (the ids do not match their checksum)" in proc.stdout
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["status"] == "ok"
    assert cache.load(tmp_path / "cache", npy.stem) is not None
