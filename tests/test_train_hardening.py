"""lgcvd-train under stress: stop signals, kills at any moment, the user's umask and divergence
(newer files and runtime-only installs: test_train_versions.py). Each case checks the exit code,
the exact message and that nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import dead_pid, stop_and_wait

from lgcvd_train.checkpoint import (
    FILENAME,
    READABLE,
    load_checkpoint,
)
from lgcvd_train.cli import main
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.data import shapes
from lgcvd_train.trainer import METRICS, DivergedError, Trainer

BIN = Path(sys.executable).parent
TINY = ["--preset", "tiny", "--data", "shapes", "--num-videos", "4", "--batch-size", "1"]
RUN_FILES = sorted([FILENAME, READABLE, METRICS])  # a run directory holds these and nothing else
UPGRADE = "upgrade lgcvd (pip install -U lgcvd)"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(*args):
    return CliRunner().invoke(main, [*TINY, "--quiet", *(str(a) for a in args)])


def videos():
    return list(shapes.generate(2, 16, 32, 0))


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / METRICS).read_text().splitlines()]


# --- stop signals ------------------------------------------------------------------------------


def hangup_by_default() -> None:
    """In the child: SIGHUP's default action, even when the tests run under nohup."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code, word",
    [
        (signal.SIGTERM, 143, "terminated"),
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGHUP, 129, "hung up"),
    ],
)
def test_a_stop_signal_saves_a_resumable_checkpoint_and_leaves_no_temporary_file(
    tmp_path, sig, code, word
):
    out = tmp_path / "run"
    cmd = [str(BIN / "lgcvd-train"), *TINY, "--steps", "100000", "--save-every", "100000"]
    proc = subprocess.Popen(
        [*cmd, "--quiet", "--out", str(out)],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=hangup_by_default,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        (out / METRICS).exists() and (out / METRICS).read_text().strip()
    ):  # 10 steps done
        time.sleep(0.2)
    err = stop_and_wait(proc, sig)
    assert proc.returncode == code, err[-2000:]
    ckpt = load_checkpoint(out)
    assert ckpt.step >= 10
    assert err.strip().splitlines() == [
        f"{word} at step {ckpt.step}; checkpoint saved in {out} (continue with --resume)"
    ]
    assert json.loads((out / READABLE).read_text()) == ckpt.state
    assert sorted(os.listdir(out)) == RUN_FILES
    more = train("--steps", ckpt.step + 1, "--out", out, "--resume")
    assert more.exit_code == 0, more.output
    assert load_checkpoint(out).step == ckpt.step + 1
    assert sorted(os.listdir(out)) == RUN_FILES


def test_a_stop_before_training_began_says_no_checkpoint_was_written(tmp_path, monkeypatch):
    from lgcvd_runtime.signals import Terminated

    def stop(*args, **kwargs):
        raise Terminated

    monkeypatch.setattr("lgcvd_train.data.load_dataset", stop)
    result = train("--out", tmp_path / "run")
    assert result.exit_code == 143
    assert result.output == "terminated before training began; no checkpoint written\n"
    assert not (tmp_path / "run").exists()


def test_a_stop_during_an_optimizer_update_takes_effect_after_it(tmp_path, monkeypatch):
    trainer = Trainer(
        preset("tiny"), TrainConfig(batch_size=1), videos(), tmp_path, {}, progress=False
    )
    ema_before = [p.clone() for p in trainer.ema.parameters()]
    update = trainer.opt.step

    def signal_then_update(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C arrives as the update begins
        return update(*args, **kwargs)

    monkeypatch.setattr(trainer.opt, "step", signal_then_update)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_step()
    assert trainer.step == 1  # weights, EMA and step all moved on: a consistent state to save
    assert any(
        not torch.equal(a, b) for a, b in zip(ema_before, trainer.ema.parameters(), strict=True)
    )


def test_a_second_signal_does_not_cut_short_the_checkpoint_saved_on_a_stop(tmp_path, monkeypatch):
    import lgcvd_train.trainer as trainer_module

    cfg = TrainConfig(steps=10, batch_size=1, save_every=1000)
    trainer = Trainer(preset("tiny"), cfg, videos(), tmp_path / "run", {}, progress=False)
    step = trainer.train_step

    def stop_at_two():
        if trainer.step == 2:
            raise KeyboardInterrupt
        return step()

    save = trainer_module.save_checkpoint

    def terminated_while_saving(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # the supervisor loses patience during the save
        return save(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", stop_at_two)
    monkeypatch.setattr(trainer_module, "save_checkpoint", terminated_while_saving)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run").step == 2
    assert sorted(os.listdir(tmp_path / "run")) == RUN_FILES


# --- resume after a kill at any moment ----------------------------------------------------------


def test_resume_drops_a_torn_last_log_line_with_a_note(tmp_path, capsys):
    run, mcfg = tmp_path / "run", preset("tiny")
    cfg = TrainConfig(steps=2, batch_size=1, log_every=1)
    Trainer(mcfg, cfg, videos(), run, {}, progress=False).fit()
    with open(run / METRICS, "a") as f:
        f.write('{"step": 3, "loss": 0.1')  # killed while writing step 3's line
    capsys.readouterr()
    trainer = Trainer(mcfg, cfg.with_(steps=3), videos(), run, {}, resume=True, progress=False)
    assert capsys.readouterr().err == (
        f"note: {run / METRICS}: dropped its torn last line (a kill while writing it)\n"
    )
    assert steps_logged(run) == [1, 2]
    trainer.fit()
    assert steps_logged(run) == [1, 2, 3]
    assert sorted(os.listdir(run)) == RUN_FILES


def test_a_damaged_log_line_before_the_last_is_one_line(tmp_path):
    out = tmp_path / "run"
    assert train("--steps", 2, "--out", out).exit_code == 0
    log = (out / METRICS).read_text()
    (out / METRICS).write_text("garbage\n" + log)
    result = train("--steps", 3, "--out", out, "--resume")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {out / METRICS}: line 1 is not a metrics record; delete that line (or the file) "
        "and resume again\n"
    )
    assert (out / METRICS).read_text() == "garbage\n" + log  # left as it was


def test_resume_removes_the_temporary_files_of_killed_saves_and_not_a_live_writers(tmp_path):
    out = tmp_path / "run"
    assert train("--steps", 2, "--out", out).exit_code == 0
    killed = dead_pid()
    for name in RUN_FILES:  # what a SIGKILL leaves (lgcvd_runtime.files.temporary_path's names)
        (out / f".{name}.{killed}-0123abcd.tmp").write_bytes(b"\0" * 100_000)
    writing = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    live = out / f".{FILENAME}.{writing.pid}-0123abcd.tmp"  # another process's save under way
    live.write_bytes(b"")
    try:
        result = train("--steps", 3, "--out", out, "--resume")
    finally:
        writing.kill()
        writing.wait()
    assert result.exit_code == 0, result.output
    note = f"note: removed 3 temporary file(s) that a killed save left in {out}"
    assert result.stderr.splitlines() == [note]
    assert sorted(os.listdir(out)) == sorted([*RUN_FILES, live.name])


KILLED_SAVE = textwrap.dedent(
    """
    import copy, os, sys
    from pathlib import Path
    import torch
    from lgcvd_train import checkpoint
    from lgcvd_train.config import TrainConfig, preset
    from lgcvd_train.model import LGCVD

    run, window = Path(sys.argv[1]), sys.argv[2]
    model = LGCVD(preset("tiny"))
    ema, opt = copy.deepcopy(model), torch.optim.Adam(model.parameters())
    checkpoint.save_checkpoint(run, model, ema, opt, 1, TrainConfig(), {})

    def killed(*args, **kwargs):
        os._exit(9)  # like SIGKILL: no clean-up runs

    def killed_while_writing(tensors, path, metadata):
        Path(path).write_bytes(b"\\0" * 100_000)
        os._exit(9)

    if window == "after the weights":
        checkpoint.write_readable = killed
    else:
        checkpoint.save_file = killed_while_writing
    checkpoint.save_checkpoint(run, model, ema, opt, 2, TrainConfig(), {})
    """
)


@pytest.mark.parametrize("window, step", [("after the weights", 2), ("during the weights", 1)])
def test_checkpoint_json_never_names_another_step_than_the_weights(tmp_path, window, step):
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(run), window], env=ENV, capture_output=True
    )
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert load_checkpoint(run).step == step
    assert not (run / READABLE).exists()  # no copy rather than a copy of another step
    Trainer(preset("tiny"), TrainConfig(steps=5), [], run, {}, resume=True, progress=False)
    assert json.loads((run / READABLE).read_text()) == load_checkpoint(run).state
    assert sorted(os.listdir(run)) == sorted([FILENAME, READABLE])


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_run_files_get_the_permissions_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        result = train("--steps", 1, "--out", tmp_path / "run")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    modes = {n: oct(stat.S_IMODE((tmp_path / "run" / n).stat().st_mode)) for n in RUN_FILES}
    assert modes == dict.fromkeys(RUN_FILES, oct(mode))
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o777 & ~umask


# --- divergence ---------------------------------------------------------------------------------


def test_a_loss_that_becomes_nan_stops_training_and_saves_nothing(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(
        preset("tiny"), TrainConfig(steps=5, batch_size=1), videos(), run, {}, progress=False
    )
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError) as err:
        trainer.fit()
    assert str(err.value) == (
        "the loss is nan at step 1: training diverged; no checkpoint was written; train again "
        "(--force) with a lower --lr or a --grad-clip"
    )
    assert not (run / FILENAME).exists()


def test_weights_that_become_nan_are_never_saved_over_a_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(steps=2, batch_size=1)
    Trainer(preset("tiny"), cfg, videos(), run, {}, progress=False).fit()
    good = (run / FILENAME).read_bytes()
    trainer = Trainer(
        preset("tiny"), cfg.with_(steps=4), videos(), run, {}, resume=True, progress=False
    )
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("inf"))
    with pytest.raises(DivergedError) as err:
        trainer.save()
    assert str(err.value) == (
        f"the weights hold NaN or Inf at step 2: training diverged; the checkpoint in {run} holds "
        "step 2; train again (--force) with a lower --lr or a --grad-clip"
    )
    assert (run / FILENAME).read_bytes() == good


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import errno

    import lgcvd_train.checkpoint as checkpoint_module

    out = tmp_path / "run"
    assert train("--steps", 1, "--out", out).exit_code == 0
    before = (out / FILENAME).read_bytes()

    def full(tensors, path, metadata):
        Path(path).write_bytes(b"\0" * 1000)  # part of it fitted
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", full)
    result = train("--steps", 2, "--out", out, "--resume")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {out / FILENAME}: cannot write the checkpoint of step 2 ([Errno 28] No space "
        "left on device); free disk space or pass another --out\n"
    )
    assert (out / FILENAME).read_bytes() == before
    assert sorted(os.listdir(out)) == [FILENAME, METRICS]  # the copy comes back on resume
