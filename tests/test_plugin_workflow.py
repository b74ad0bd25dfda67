"""The GitHub workflow ``bench new-plugin`` writes into a plugin package: every ``bench`` option
it passes exists and its defaults plan the package's own model, and its own steps, run on a
generated plugin repository whose pull request makes the model twice as slow, post the summary
and fail the check.

The steps run as a runner would run them (``bash -eo pipefail``, ``${{ }}`` expressions filled
in, ``GITHUB_OUTPUT`` and ``GITHUB_STEP_SUMMARY`` files, a stand-in ``gh`` that records its
arguments), except those that need the network: the ``uses:`` actions (checkout, setup-python,
upload-artifact) and the install step, which is replaced by the pull request's package installed
offline on PYTHONPATH beside the bench running the tests. The session is shortened as
test_ab.py's is: 12 rounds of 20 ms, forward passes at batch 32.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from string import Template

import yaml
from plugin_repos import (
    PluginRepo,
    forward_flops,
    install_commit,
    plugin_repo,
    read_results,
    site_env,
)
from test_ab import judged

from harness import DISTRIBUTION
from harness.cli import cli

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
BIN = Path(sys.executable).parent  # where the bench script is installed
FAKE_GH = '#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGS"\n'
EXPECTED_ACTIONS = ["actions/checkout@v4", "actions/setup-python@v5", "actions/upload-artifact@v4"]


def workflow_of(repo: PluginRepo) -> dict:
    return yaml.safe_load((repo.path / ".github" / "workflows" / "bench.yml").read_text())


def steps_of(workflow: dict) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def fill(text: str, context: dict[str, str]) -> str:
    """``text`` with its ``${{ expression }}`` replaced; an expression the test does not know
    fails it, as a typo would fail the workflow."""
    return EXPRESSION.sub(lambda match: context[match.group(1)], text)


def bench_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """The arguments of every ``bench`` command of a step's script, its variables expanded as
    the shell would expand them (``$BENCH_AB_ARGS`` is split into words)."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(Template(line).safe_substitute(env))
        if words and words[0] == "bench":
            commands.append(words[1:])
    return commands


def pull_request(repo: PluginRepo) -> dict[str, str]:
    """The expressions the workflow uses, for a pull request of the last commit onto the first."""
    return {
        "github.workspace": str(repo.path),
        "github.event.pull_request.base.sha": repo.commits[0],
        "github.event.pull_request.number": "7",
        "github.token": "not-a-token",
    }


def test_every_bench_option_the_workflow_passes_exists_and_plans_the_package(tmp_path):
    """click parses each bench command line of the workflow (it refuses an option that does not
    exist) with the workflow's own settings; then ``bench ab --dry-run`` of that very command,
    in the repository with the package installed, plans the package's model on its dataset. The
    workflow installs CPU torch first, then bench by the name the package depends on."""
    repo = plugin_repo(tmp_path / "repo", slower=False)
    workflow = workflow_of(repo)
    context = {**pull_request(repo), "steps.ab.outputs.exit_code": "0"}
    env = {name: fill(str(value), context) for name, value in workflow["env"].items()}
    commands = []
    for step in steps_of(workflow):
        step_env = {name: fill(value, context) for name, value in step.get("env", {}).items()}
        commands += bench_commands(fill(step.get("run", ""), context), {**env, **step_env})
    ((name, *args),) = commands
    params = cli.get_command(None, name).make_context(name, list(args)).params
    assert (params["baseline"], params["candidate"]) == (f"git:{repo.commits[0]}", "current")
    assert params["models"] == (repo.names.model,) and params["datasets"] == (repo.names.dataset,)
    assert (params["threads"], params["rounds"], params["batch_sizes"]) == (1, 20, (1, 32))
    assert params["markdown_out"] == params["out"] / "summary.md"

    site = install_commit(repo, repo.commits[0], tmp_path / "site")
    dry = subprocess.run(
        [BIN / "bench", name, *args, "--dry-run"],
        cwd=repo.path,
        env=site_env(site),
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"baseline: git:{repo.commits[0]} (commit {repo.commits[0][:12]})" in dry.stdout
    assert f"{repo.names.model}-{repo.names.dataset}-cpu-b32" in dry.stdout

    (install,) = [step["run"] for step in steps_of(workflow) if step.get("id") == "install"]
    torch, bench, package = install.splitlines()
    assert "torch" in torch.split() and "--index-url https://download.pytorch.org/whl/cpu" in torch
    assert bench.split()[:4] == ["python", "-m", "pip", "install"] and '"$BENCH_PACKAGE"' in bench
    assert env["BENCH_PACKAGE"] == DISTRIBUTION and package == "python -m pip install ."
    pyproject = (repo.path / "pyproject.toml").read_text()
    assert f'dependencies = ["{DISTRIBUTION}"]' in pyproject


def run_step(step: dict, env: dict[str, str], context: dict[str, str], cwd: Path) -> int:
    """One ``run:`` step as a runner runs it: its script in a file, through ``bash --noprofile
    --norc -eo pipefail``, with the job's and the step's environment."""
    script = cwd.parent / "step.sh"
    script.write_text(fill(step["run"], context))
    step_env = {name: fill(value, context) for name, value in step.get("env", {}).items()}
    command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    return subprocess.run(command, cwd=cwd, env={**env, **step_env}).returncode


def outputs(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.is_file() else []
    return dict(line.split("=", 1) for line in lines)


def test_the_workflow_steps_fail_a_pull_request_that_slows_the_model(tmp_path):
    """A pull request of the twice slower commit onto the first, with the pull request's package
    installed: the steps post the summary (job summary and comment) and the check fails with
    bench ab's exit code, 1 (or 3, no verdict, on a machine too busy for one). Of the workflow's
    settings, only ROUNDS and BENCH_AB_ARGS are shortened (the first test checks its own)."""
    repo = plugin_repo(tmp_path / "repo")
    workflow = workflow_of(repo)
    context = pull_request(repo)
    site = install_commit(repo, repo.commits[-1], tmp_path / "site")  # `pip install .`
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "gh").write_text(FAKE_GH)
    (fakes / "gh").chmod(0o755)
    runner = {
        "GITHUB_ACTIONS": "true",  # as on GitHub: bench ab writes the job summary itself
        "PATH": os.pathsep.join([str(fakes), str(BIN), os.environ["PATH"]]),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "GITHUB_REPOSITORY": "someone/bench-cnn1d",
        "GH_ARGS": str(tmp_path / "gh-args"),
    }
    env = {**site_env(site), **runner}
    env.update({name: fill(str(value), context) for name, value in workflow["env"].items()})
    names = repo.names
    # 11 rounds: 7 can reach a verdict only if every round is slower, so one round disturbed
    # by the machine (not enough to count as contended) left a 2x slowdown "not significant"
    env["ROUNDS"] = "11"
    env["BENCH_AB_ARGS"] = f"--model {names.model} --dataset {names.dataset} --batch-size 32 "
    env["BENCH_AB_ARGS"] += "--mode forward --round-time 0.02"

    actions, codes, failed = [], {}, False
    for step in steps_of(workflow):
        if "uses" in step:
            actions.append(step["uses"])
            continue
        if step.get("id") == "install" or (failed and "always()" not in step.get("if", "")):
            continue  # installed above, offline; or skipped after a failed step, as on GitHub
        for key, value in outputs(tmp_path / "output").items():
            context[f"steps.ab.outputs.{key}"] = value
        codes[step["name"]] = run_step(step, env, context, repo.path)
        failed = failed or codes[step["name"]] != 0
    assert actions == EXPECTED_ACTIONS

    results = Path(env["RESULTS"])
    code = int(outputs(tmp_path / "output")["exit_code"])
    assert list(codes.values()) == [0, 0, code] and code in (1, 3), codes  # ab, comment, verdict
    if judged(results):
        assert code == 1
    summary = (results / "summary.md").read_text()
    title = "regression" if code == 1 else "no trustworthy verdict (contended measurements)"
    assert summary.startswith(f"## bench compare: {title}")
    assert (tmp_path / "summary").read_text() == summary
    gh = (tmp_path / "gh-args").read_text().splitlines()
    assert gh == [
        "pr", "comment", "7", "--repo", runner["GITHUB_REPOSITORY"],
        "--body-file", str(results / "summary.md"), "--edit-last", "--create-if-none",
    ]  # fmt: skip
    # the baseline ran the base commit's package, not the pull request's installed copy
    baseline, candidate = (read_results(results, role) for role in ("baseline", "candidate"))
    assert forward_flops(candidate) == 2 * forward_flops(baseline)
    assert baseline["environment"]["git_commit"] == repo.commits[0]
    assert candidate["environment"]["git_commit"] == repo.commits[1]
