"""The project's settings file (``[tool.bench]`` in pyproject.toml, or bench.toml): found from
the current directory upward, checked key by key, overridden by flags, and recorded with the
verdict.

Results files are written as tests/test_compare.py writes them (seeded samples), so no verdict
here depends on the speed of the machine.
"""

import json

import pytest
from click.testing import CliRunner
from test_compare import draws, timing_run, write

from harness.cli import cli
from harness.comparing.settings_file import find_settings
from harness.comparing.verdicts import REGRESSION


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory, the current one (with a .git, so no search goes above)."""
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def bench(*args):
    result = CliRunner().invoke(cli, list(map(str, args)))
    return result.exit_code, result.output


def slower(factor, seed, **config):
    return [factor * s for s in draws(seed, **config)]


def seven_percent_slower(directory):
    """``forward`` 7% slower (clear: 60 samples a side), ``train_step`` 30% slower."""
    base = write(
        directory / "base.json",
        [timing_run(0, {"forward": draws(1, n=60, spread=0.01), "train_step": draws(2)})],
    )
    cand = write(
        directory / "cand.json",
        [
            timing_run(
                0,
                {"forward": slower(1.07, 3, n=60, spread=0.01), "train_step": slower(1.3, 4)},
            )
        ],
    )
    return base, cand


def verdict_of(output, metric):
    document = json.loads(output)
    return next(row for row in document["rows"] if row["metric"] == metric)


# --- finding and checking the file


def test_no_file_means_no_settings(project):
    assert find_settings() == find_settings(project)
    assert find_settings().path is None and find_settings().rules().source is None


def test_bench_toml_or_tool_bench_is_found_from_a_subdirectory(project):
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.bench]\ngate = ["a"]\n')
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    settings = find_settings(deep)
    assert settings.path == project / "pyproject.toml" and settings.gate == ("a",)
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no [tool.bench]
    (project / "bench.toml").write_text('ab_rounds = 9\nsuite = "suites/ci.toml"\n')
    settings = find_settings(deep)
    assert settings.path == project / "bench.toml" and settings.ab_rounds == 9
    assert settings.suite == str(project / "suites" / "ci.toml")  # beside the file


def test_the_search_stops_at_the_top_of_the_repository(project):
    (project / "bench.toml").write_text("ab_rounds = 9\n")
    inner = project / "inner"
    (inner / ".git").mkdir(parents=True)
    assert find_settings(inner).path is None


def test_settings_in_both_places_is_an_error(project):
    (project / "bench.toml").write_text("ab_rounds = 9\n")
    (project / "pyproject.toml").write_text("[tool.bench]\nab_rounds = 8\n")
    code, output = bench("compare", "a.json", "b.json")
    assert code == 2 and "keep them in one place" in output


def test_a_malformed_file_exits_2_naming_it(project):
    (project / "bench.toml").write_text("thresholds = {\n")
    code, output = bench("compare", "a.json", "b.json")
    assert code == 2
    assert f"settings file {project / 'bench.toml'} is not valid TOML" in output


def test_every_bad_key_exits_2_naming_the_file_and_the_key_at_once(project):
    (project / "pyproject.toml").write_text(
        "[tool.bench]\nrounds = 30\ngate = 'forward'\nthresholds = {'*' = 'fast'}\nab_rounds = 3\n"
    )
    code, output = bench("compare", "a.json", "b.json")
    assert code == 2
    where = f"settings file {project / 'pyproject.toml'}: key"
    lines = [line.removeprefix("error: ") for line in output.strip().splitlines()]
    assert lines == [
        f"{where} 'tool.bench.rounds': unknown key 'rounds'. Did you mean 'ab_rounds'? Known "
        "keys: ab_rounds, counter_thresholds, gate, history_dir, suite, thresholds",
        f"{where} 'tool.bench.thresholds': '*' = 'fast': expected a number of percent, or 'N%' "
        "or 'Npp'",
        f"{where} 'tool.bench.gate': expected an array of metric globs, e.g. "
        '["forward*", "train_step"]',
        f"{where} 'tool.bench.ab_rounds': expected a whole number of rounds, at least 7, got 3",
    ]


# --- thresholds and gate in bench compare


def test_a_threshold_per_glob_changes_a_verdict_and_flags_override_it(project):
    base, cand = seven_percent_slower(project)
    code, output = bench("compare", base, cand, "--json")
    assert verdict_of(output, "forward")["verdict"] == "ok"  # within the default 10%
    # the most specific glob wins, whatever the order in the file
    (project / "bench.toml").write_text('thresholds = {"forward" = 5.0, "*" = 50}\n')
    code, output = bench("compare", base, cand, "--json")
    assert verdict_of(output, "forward")["verdict"] == REGRESSION
    assert verdict_of(output, "train_step")["verdict"] == "ok"  # 30% < 50%
    assert code == 1
    code, output = bench("compare", base, cand, "--json", "--threshold", "forward=8%")
    assert verdict_of(output, "forward")["verdict"] == "ok" and code == 0


def test_the_gate_keeps_a_metric_out_of_the_exit_code_and_the_flag_replaces_it(project):
    base, cand = seven_percent_slower(project)
    (project / "bench.toml").write_text('gate = ["forward*"]\n')
    code, output = bench("compare", base, cand)
    assert code == 0, output  # train_step regressed, but only forward decides
    assert "REGRESSION (not gated)" in output
    assert "only metrics matching forward* decide the exit code" in output
    code, output = bench("compare", base, cand, "--gate", "train_step", "--json")
    assert code == 1 and verdict_of(output, "train_step")["gated"] is True


def test_the_settings_used_are_recorded_with_the_verdict(project):
    base, cand = seven_percent_slower(project)
    (project / "bench.toml").write_text(
        'thresholds = {"*" = 20, "forward*" = "3%", "*accuracy" = "0.5pp"}\ngate = ["forward"]\n'
        'counter_thresholds = {"*.operators" = 2.0}\n'
    )
    code, output = bench("compare", base, cand, "--json", "--threshold", "train_step=40%")
    assert json.loads(output)["settings"] == {
        "file": str(project / "bench.toml"),
        "thresholds": ["*=20%", "forward*=3%", "*accuracy=0.5pp", "train_step=40%"],
        "metrics": [],
        "gate": ["forward"],
        "strict": False,
        "counter_thresholds": ["*.operators=2%"],
    }
    code, output = bench("compare", base, cand, "--markdown-out", "summary.md")
    assert f"settings: {project / 'bench.toml'}" in output
    assert f"_Settings: `{project / 'bench.toml'}`._" in (project / "summary.md").read_text()
