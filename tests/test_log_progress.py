"""Progress as lines when output is piped: a CI log hears of every finished run and of a long run
every 30 s, with the count and the time left."""

import io
import time

from click.testing import CliRunner

from harness.cli import cli
from harness.execution.log_progress import LogBar, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_per_finished_run_with_the_time_left():
    clock, stream = Clock(), io.StringIO()
    bar = LogBar(4, "suite", stream=stream, clock=clock, heartbeat=False)
    clock.now = 30
    bar.set_postfix_str("000-mlp ok")
    bar.update(1)
    clock.now = 200
    bar.set_postfix_str("001-cnn failed")
    bar.update(1)
    bar.set_postfix_str("003-cnn ok")
    bar.update(2)
    assert stream.getvalue().splitlines() == [
        "suite [1/4] 000-mlp ok; 30 s elapsed, about 1 min 30 s left",
        "suite [2/4] 001-cnn failed; 3 min 20 s elapsed, about 3 min 20 s left",
        "suite [4/4] 003-cnn ok; 3 min 20 s elapsed",
    ]


def test_a_long_run_is_heard_of_every_30_seconds_and_no_more():
    clock, stream = Clock(), io.StringIO()
    bar = LogBar(2, "suite", stream=stream, clock=clock, heartbeat=False)
    bar.set_postfix_str("000-mlp: epoch 3, val acc 91.0%")
    for now in (10, 29.9, 30, 45, 59.9, 60):
        clock.now = now
        bar.tick()
    assert stream.getvalue().splitlines() == [
        "suite [0/2] still running 000-mlp: epoch 3, val acc 91.0%; 30 s elapsed",
        "suite [0/2] still running 000-mlp: epoch 3, val acc 91.0%; 1 min 0 s elapsed",
    ]


def test_the_heartbeat_runs_by_itself_until_closed():
    stream = io.StringIO()
    with LogBar(1, "suite", stream=stream, every=0.05) as bar:
        bar.set_postfix_str("000-mlp")
        deadline = time.monotonic() + 10
        while "still running 000-mlp" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "suite [0/1] still running 000-mlp;" in stream.getvalue()
    heard = stream.getvalue()
    time.sleep(0.2)
    assert stream.getvalue() == heard  # closed: silent


def test_durations_read_as_a_person_reads_them():
    assert [duration(s) for s in (0.4, 42, 185, 3720)] == ["0 s", "42 s", "3 min 5 s", "1 h 2 min"]


def test_a_piped_bench_run_prints_a_line_per_run_and_quiet_prints_none(tmp_path):
    args = ["run", "--model", "mlp", "--dataset", "digits", "--dataset-opt", "size=8",
            "--epochs", "1", "--seed", "0", "--seed", "1", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlp-digits [")]
    assert [line.split(";")[0] for line in lines] == [
        "mlp-digits [1/2] 000-mlp-digits-s0 ok",
        "mlp-digits [2/2] 001-mlp-digits-s1 ok",
    ]
    quiet = CliRunner().invoke(cli, [*args, "--quiet", "--out", str(tmp_path / "b")])
    assert quiet.exit_code == 0 and "mlp-digits [" not in quiet.output
