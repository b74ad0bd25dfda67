"""The performance history: the store (add, many files at once, manifests, dedupe, rebuild,
refusal, concurrent adds), change points on series with known answers (the cases of
``benchmarks/history_detection.py`` on seeded series, short histories), what detect says of a
series without one, the false-discovery-rate correction, exit codes, the CI recipe, and the
dashboard in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_compare import accuracy_run, draws, timing_run, write

from harness.cli import cli
from harness.errors import BenchError
from harness.history.archive import HistoryStore
from harness.history.changepoints import (
    adjusted,
    between_neighbours,
    candidates,
    distances,
)
from harness.history.detect import build_series, detect

REPO = Path(__file__).resolve().parent.parent


def sha(i: int) -> str:
    """A commit id whose short form tells commits apart."""
    return f"{i:02x}" + "0" * 38


def history(*args):
    return CliRunner().invoke(cli, ["history", *map(str, args)])


def commit_files(tmp_path, medians, *, accuracy=None, name="c"):
    """One results file per commit: a forward timing around each median (30 samples), and
    optionally a test accuracy per commit (3 seeds)."""
    paths = []
    for i, median in enumerate(medians):
        runs = [timing_run(0, {"forward": draws(1000 + i, median=median, spread=0.02)})]
        if accuracy is not None:
            runs += [accuracy_run(1 + s, s, accuracy[i] + 0.002 * s) for s in range(3)]
        paths.append(write(tmp_path / f"{name}{i:02d}" / "results.json", runs, git_commit=None))
    return paths


def recorded(path: Path, samples, commit: str, date: str) -> Path:
    """A results file of one forward timing that records its own commit and date."""
    write(path, [timing_run(0, {"forward": list(samples)})], git_commit=commit)
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "created_at": date}))
    return path


def filed(tmp_path, medians, **kwargs) -> Path:
    root = tmp_path / "history"
    for i, path in enumerate(commit_files(tmp_path, medians, **kwargs)):
        result = history("--history", root, "add", path, "--commit", sha(i),
                         "--date", f"2026-11-01T00:{i:02d}:00")  # fmt: skip
        assert result.exit_code == 0, result.output
    return root


# --- the store ---------------------------------------------------------------------------------


def test_adding_files_each_result_set_once_and_the_index_rebuilds_the_same(tmp_path):
    root = filed(tmp_path, [0.010] * 4)
    store = HistoryStore(root)
    assert [e.commit for e in store.entries()] == [sha(i) for i in range(4)]
    points = store.points()
    assert {p.metric for p in points} == {"forward"} and len(points) == 4
    assert len(points[0].samples) == 30  # the raw samples, not only a median
    again = history("--history", root, "add", tmp_path / "c00", "--commit", "f" * 40)
    assert again.exit_code == 0 and "already there" in again.output
    assert len(HistoryStore(root).entries()) == 4  # the same bytes: nothing new
    before = [(p.series, p.samples, p.entry.commit) for p in HistoryStore(root).points()]
    (root / "index.sqlite").unlink()  # the files are the truth
    after = [(p.series, p.samples, p.entry.commit) for p in HistoryStore(root).points()]
    assert after == before
    assert history("--history", root, "rebuild").output.strip() == "index rebuilt: 4 result sets"


def test_the_settings_file_names_the_history_and_history_overrides_it(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.bench]\nhistory_dir = "perf/history"\n')
    (path,) = commit_files(tmp_path, [0.010])
    monkeypatch.chdir(tmp_path / "c00")  # relative to the settings file, not the cwd
    assert history("add", path, "--commit", sha(0)).exit_code == 0
    assert [e.commit for e in HistoryStore(tmp_path / "perf" / "history").entries()] == [sha(0)]
    assert history("--history", tmp_path / "other", "add", path, "--commit", sha(1)).exit_code == 0
    assert len(HistoryStore(tmp_path / "other").entries()) == 1
    assert len(HistoryStore(tmp_path / "perf" / "history").entries()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"runs": [', "not valid JSON"),
        ('{"tool": "other", "runs": []}', "not a bench results file"),
    ],
    ids=["corrupt", "foreign"],
)
def test_a_corrupt_or_foreign_file_is_refused_and_nothing_changes(tmp_path, content, message):
    root = filed(tmp_path, [0.010] * 2)
    files = sorted(p.name for p in (root / "results").iterdir())
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = history("--history", root, "add", bad, "--commit", "a" * 40)
    assert result.exit_code == 2 and message in result.output and str(bad) in result.output
    assert sorted(p.name for p in (root / "results").iterdir()) == files
    assert len(HistoryStore(root).entries()) == 2


def test_one_bad_file_among_many_files_none(tmp_path):
    root = filed(tmp_path, [0.010] * 2)
    files = sorted(p.name for p in (root / "results").iterdir())
    good = recorded(tmp_path / "good.json", draws(7), sha(9), "2026-11-02T00:00:00+00:00")
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": [')
    result = history("--history", root, "add", good, bad)
    assert result.exit_code == 2 and str(bad) in result.output
    assert sorted(p.name for p in (root / "results").iterdir()) == files


def test_many_files_are_filed_in_one_call_each_under_the_commit_and_date_it_records(tmp_path):
    dates = [f"2026-11-{1 + i:02d}T12:00:00+00:00" for i in range(20)]
    paths = [
        recorded(tmp_path / f"r{i:02d}" / "results.json", draws(i), f"{sha(i)}-dirty", dates[i])
        for i in range(20)
    ]
    root = tmp_path / "history"
    result = history("--history", root, "add", *reversed(paths))  # any order: dates order them
    assert result.exit_code == 0, result.output
    assert result.output.count("added: ") == 20
    entries = HistoryStore(root).entries()
    assert [(e.commit, e.date) for e in entries] == [(sha(i), dates[i]) for i in range(20)]
    again = history("--history", root, "add", *paths)
    assert again.output.count("already there: ") == 20


def test_a_manifest_names_each_files_commit_and_date_and_a_bad_line_is_named(tmp_path):
    for i in range(3):
        recorded(tmp_path / f"run {i}" / "results.json", draws(i), sha(9), "2026-01-01T00:00:00")
    manifest = tmp_path / "runs.txt"
    manifest.write_text(
        "# path commit [date]: paths from this file's folder\n\n"
        f"'run 0' {sha(0)} 2026-11-01T00:00:00\n"
        f"'run 1/results.json' {sha(1)} 2026-11-02T00:00:00  # a comment\n"
        f"'run 2' {sha(2)}\n"  # no date: git's, else the file's
    )
    root = tmp_path / "history"
    result = history("--history", root, "add", "--manifest", manifest, "--branch", "main")
    assert result.exit_code == 0, result.output
    entries = HistoryStore(root).entries()
    assert [(e.commit, e.date, e.branch) for e in entries] == [
        (sha(2), "2026-01-01T00:00:00", "main"),
        (sha(0), "2026-11-01T00:00:00", "main"),
        (sha(1), "2026-11-02T00:00:00", "main"),
    ]
    for line, message in [
        ("'run 0'", "expected 'PATH COMMIT [DATE]'"),
        (f"'run 0' {sha(0)} yesterday", "'yesterday' is not an ISO date"),
        (f"nowhere {sha(0)}", "no such file or folder"),
        (f"'run 0 {sha(0)}", "No closing quotation"),
    ]:
        manifest.write_text(f"'run 1' {sha(1)}\n# fine so far\n{line}\n")
        bad = history("--history", tmp_path / "other", "add", "--manifest", manifest)
        assert bad.exit_code == 2 and f"{manifest}:3: " in bad.output and message in bad.output
        assert not (tmp_path / "other" / "results").exists() or not any(
            (tmp_path / "other" / "results").iterdir()
        )
    assert history("--history", root, "add").exit_code == 2  # nothing to add
    bad_date = history("--history", root, "add", tmp_path / "run 0", "--date", "monday")
    assert bad_date.exit_code == 2 and "--date: 'monday' is not an ISO date" in bad_date.output


def test_concurrent_adds_lose_no_entry(tmp_path):
    paths = commit_files(tmp_path, [0.010 + 0.0001 * i for i in range(6)])
    root = tmp_path / "history"
    bench = [sys.executable, "-m", "harness", "history", "--history", str(root), "add"]
    adders = [
        subprocess.Popen(
            [*bench, str(paths[i]), str(paths[i + 3]), "--commit", sha(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(3)
    ]
    for adder in adders:
        _, stderr = adder.communicate(timeout=120)
        assert adder.returncode == 0, stderr
    assert len(HistoryStore(root).entries()) == 6
    with sqlite3.connect(root / "index.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM points").fetchone() == (6,)


# --- change points -----------------------------------------------------------------------------


def test_a_10_percent_step_is_found_at_its_commit_and_a_flat_series_has_none(tmp_path):
    step = filed(tmp_path / "a", [0.010] * 12 + [0.011] * 12)
    flat = filed(tmp_path / "b", [0.010] * 24)
    (change,) = detect(build_series(HistoryStore(step).points())).changes
    assert change.after_index == 12 and change.after_commit == sha(12)
    assert change.before_commit == sha(11)
    assert change.direction == "regression" and change.unit == "%"
    assert 8 < change.change < 12 and change.p_value <= change.q_value <= 0.05
    assert detect(build_series(HistoryStore(flat).points())).changes == []


def test_accuracy_changes_in_percentage_points_and_a_drop_is_a_regression(tmp_path):
    root = filed(tmp_path, [0.010] * 16, accuracy=[0.95] * 8 + [0.90] * 8)
    detection = detect(build_series(HistoryStore(root).points(), metric="test_accuracy"))
    (change,) = detection.changes
    assert change.metric == "test_accuracy" and change.unit == "pp"
    assert change.direction == "regression" and change.change == pytest.approx(-5.0, abs=0.5)


def test_a_piped_detect_prints_a_line_per_series_screened_on_stderr_only(tmp_path):
    root = filed(tmp_path, [0.010] * 8, accuracy=[0.95] * 8)
    piped = history("--history", root, "detect", "--json")
    lines = [line.split(";")[0] for line in piped.stderr.splitlines()]
    assert lines == [
        "bench history detect [1/3] lenet5-synthetic-cpu-b32 forward",
        "bench history detect [2/3] mlp-digits test_accuracy",
        "bench history detect [3/3] mlp-digits val_accuracy",
    ]
    assert len(json.loads(piped.stdout)["no_change"]) == 3  # stdout stays the answer


def test_detection_repeats_exactly_and_a_larger_min_effect_hides_a_small_step(tmp_path):
    root = filed(tmp_path, [0.010] * 10 + [0.0103] * 10)  # +3%
    series = build_series(HistoryStore(root).points())
    first, second = detect(series), detect(series)
    assert first.to_json() == second.to_json() and len(first.changes) == 1
    assert detect(series, min_effect=5.0).changes == []
    assert len(detect(series, min_effect_pp=5.0).changes) == 1  # that floor is for accuracies


def test_the_correction_counts_every_series_tested():
    # by hand: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5; then the running minimum
    # from the largest down
    assert adjusted([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    # hypotheses tested without a p-value given count as never rejected: m = 8, not 2
    assert adjusted([0.01, 0.02], hypotheses=8) == pytest.approx([0.08, 0.08])
    rng = np.random.default_rng(0)
    blocks = [rng.normal(1.0, 0.02, 20) * (1.05 if i >= 10 else 1) for i in range(20)]
    medians = [float(np.median(block)) for block in blocks]
    found, screened = candidates(distances(blocks), medians, screen=0.1)
    assert 10 in found and screened >= len(found)
    (split,) = between_neighbours(medians, [10])
    assert split.p_value < 1e-4  # a 5% step, 10 commits a side, medians 0.5% apart
    # alone it passes at q = 0.05; beside 99 other tests at least as weak, it cannot
    assert adjusted([split.p_value])[0] <= 0.05
    assert adjusted([0.001] + [0.5] * 99)[0] == pytest.approx(0.1)


def test_exit_codes_follow_regressions_and_since(tmp_path):
    root = filed(tmp_path, [0.010] * 8 + [0.012] * 8)
    found = history("--history", root, "detect")
    assert found.exit_code == 1 and "regression" in found.output
    assert f"{sha(7)[:10]}..{sha(8)[:10]}" in found.output
    assert history("--history", root, "detect", "--since", sha(8)).exit_code == 1
    assert history("--history", root, "detect", "--since", sha(9)).exit_code == 0
    document = json.loads(history("--history", root, "detect", "--json").stdout)
    assert document["changes"][0]["after_commit"] == sha(8)
    unknown = history("--history", root, "detect", "--since", "feedface")
    assert unknown.exit_code == 2 and "no such commit in the history" in unknown.output
    faster = filed(tmp_path / "faster", [0.012] * 8 + [0.010] * 8)
    improved = history("--history", faster, "detect")
    assert improved.exit_code == 0 and "improvement" in improved.output
    empty = history("--history", tmp_path / "empty", "detect")
    assert empty.exit_code == 2 and "no series" in empty.output


def test_the_store_refuses_an_entry_file_it_cannot_read(tmp_path):
    root = filed(tmp_path, [0.010] * 2)
    (root / "results" / "x.entry.json").write_text("{}")
    (root / "index.sqlite").unlink()
    with pytest.raises(BenchError, match=r"x\.entry\.json: not a bench history entry"):
        HistoryStore(root)


# --- the CI recipe -----------------------------------------------------------------------------


def test_the_history_workflow_calls_bench_history_as_documented():
    import shlex

    import yaml

    from harness.cli.history import history_group

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "history.yml").read_text())
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML reads the key `on` as True
    script = "\n".join(step.get("run", "") for step in workflow["jobs"]["history"]["steps"])
    calls = [line.split("bench history", 1)[1] for line in script.splitlines()
             if line.strip().startswith("bench history")]  # fmt: skip
    commands = set()
    for call in calls:
        option, _, name, *rest = shlex.split(call.split(">", 1)[0])
        assert option == "--history"  # each call names the history on the branch's worktree
        history_group.commands[name].make_context(name, rest)  # every option it passes exists
        commands.add(name)
    assert commands == {"add", "detect", "html"}


# --- the dashboard, in a real browser ----------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE = [  # no first-run, sync, update or background connections: the page is all it loads
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every console message it logged."""
    done = subprocess.run(
        [CHROMIUM, *OFFLINE, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")
def test_the_dashboard_draws_every_series_in_chromium_with_no_console_error(tmp_path):
    root = filed(tmp_path, [0.010] * 8 + [0.012] * 8, accuracy=[0.95] * 8 + [0.90] * 8)
    result = history("--history", root, "html", tmp_path / "site")
    assert result.exit_code == 0 and "(3 series)" in result.output
    page = tmp_path / "site" / "index.html"
    text = page.read_text()
    assert "<link" not in text and " src=" not in text  # nothing to fetch: all inline
    dom, console = in_chromium(page, tmp_path / "profile")
    assert console == []
    assert 'data-drawn="3"' in dom and dom.count('class="series-svg"') == 3
    assert dom.count('class="median"') == 3 and dom.count('class="band"') == 3
    changes = json.loads(history("--history", root, "detect", "--json").stdout)["changes"]
    assert {c["metric"] for c in changes} == {"forward", "test_accuracy", "val_accuracy"}
    assert dom.count('class="change-mark"') == len(changes)
    assert dom.count('<tr class="regression">') == len(changes)
    # the console check sees errors: the same browser on a page with one
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><script>missingFunction();</script>")
    _, console = in_chromium(broken, tmp_path / "profile2")
    assert any("missingFunction" in line for line in console)
