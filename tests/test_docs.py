"""The documentation runs: every ``bench`` command it shows is executed, and every command,
option and hook of bench has a documentation entry.

The convention the pages follow (docs/reference/development.md explains it to contributors):

- Commands are shown in fenced blocks with the info string ``console``. A line starting with
  ``$ `` is a command (a line ending with ``\\`` continues on the next); other lines are sample
  output and are not run. Only ``bench ...`` commands run (a line may join several commands
  with ``&&``: its ``bench`` parts run, the README's install commands around them do not); a
  command may start with ``NAME=VALUE`` environment assignments.
- The commands of one page run in order, in one fresh temporary directory, in-process through
  click's ``CliRunner`` on the ``bench`` group, with one torch thread. Console blocks outside
  the README hold ``bench`` commands only; a ``bench`` line anywhere else fails the test. A page
  whose commands name ``examples/`` gets a copy of the repository's examples folder.
- HTML comments directly before a block steer it:
  ``<!-- docs-test: dry-run -->`` appends ``--dry-run`` to each command of the next block
  (``bench run``, ``bench time``, ``bench profile`` and ``bench ab`` only);
  ``<!-- docs-test: exit N -->`` expects exit code N from each command of the next block;
  ``<!-- docs-test: file NAME -->`` writes the next block's content to NAME in the page's
  directory before any command runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harness.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKSPECS = "harness.registry.hookspecs"  # every hook, documented by its docstring
HOOKS_PAGE = DOCS / "reference" / "hooks.md"
CLI_PAGE = DOCS / "reference" / "cli.md"
DRY_RUN_COMMANDS = {"run", "time", "profile", "ab"}  # ab: a session takes a minute

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


COMMAND_WORDS = set(cli.list_commands(click.Context(cli)))


def runs_bench(line: str) -> bool:
    """Whether a shell line runs bench: ``[$ ][NAME=VALUE ...][path/]bench COMMAND|--option``."""
    words = line.strip().removeprefix("$").split()
    while words and ASSIGNMENT.match(words[0]):
        words.pop(0)
    if len(words) < 2 or not (words[0] == "bench" or words[0].endswith("/bench")):
        return False
    return words[1] in COMMAND_WORDS or words[1].startswith("-")


def doc_pages() -> list[Path]:
    """The README and every Markdown page of the site."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def page_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


@dataclass(frozen=True)
class Command:
    """One ``bench`` command of a page, as the test runs it."""

    page: str
    line: int
    text: str  # the command as written (continuation lines joined)
    args: tuple[str, ...]  # after ``bench``
    env: tuple[tuple[str, str], ...] = ()
    exit_code: int = 0
    dry_run: bool = False

    def argv(self) -> list[str]:
        return [*self.args, "--dry-run"] if self.dry_run else list(self.args)

    def where(self) -> str:
        return f"{self.page}:{self.line}: $ {self.text}"


@dataclass
class Page:
    """What a page asks the test to do, and what it got wrong."""

    name: str
    commands: list[Command] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Block:
    info: str
    start: int  # line number of the opening fence
    indent: int
    fence: str
    markers: list[str]
    lines: list[tuple[int, str]] = field(default_factory=list)


def parse_page(path: Path) -> Page:
    """The page's commands, files and convention errors."""
    page = Page(page_name(path))
    pending: list[tuple[int, str]] = []
    block: _Block | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if block is not None:
            stripped = line.strip()
            if stripped.startswith(block.fence) and set(stripped) == {block.fence[0]}:
                _close(page, block)
                block = None
            else:
                block.lines.append((number, _dedent(line, block.indent)))
            continue
        marker = MARKER.match(line)
        if marker:
            pending.append((number, marker["body"]))
            continue
        fence = FENCE.match(line)
        if fence:
            block = _Block(
                info=fence["info"].lower(),
                start=number,
                indent=len(fence["indent"]),
                fence=fence["fence"],
                markers=[body for _, body in pending],
            )
            pending = []
            continue
        if line.strip() and pending:
            page.errors.append(
                f"{page.name}:{pending[0][0]}: a docs-test marker must be directly followed by a "
                "fenced block"
            )
            pending = []
        if line.lstrip().startswith("$ ") and runs_bench(line):
            page.errors.append(
                f"{page.name}:{number}: a bench command outside a console block: {line.strip()}"
            )
    if block is not None:
        page.errors.append(f"{page.name}:{block.start}: the fenced block is never closed")
    if pending:
        page.errors.append(f"{page.name}:{pending[0][0]}: a docs-test marker ends the page")
    return page


def _dedent(line: str, indent: int) -> str:
    return line[indent:] if line[:indent].strip() == "" else line.lstrip()


def _close(page: Page, block: _Block) -> None:
    exit_code, dry_run, files = 0, False, []
    for body in block.markers:
        word, _, rest = body.partition(" ")
        if word == "dry-run" and not rest:
            dry_run = True
        elif word == "exit" and rest.strip().isdigit():
            exit_code = int(rest)
        elif word == "file" and rest.strip():
            files.append(rest.strip())
        else:
            page.errors.append(f"{page.name}:{block.start}: unknown docs-test marker: {body!r}")
    if files:
        if block.info == "console" or len(files) > 1:
            page.errors.append(
                f"{page.name}:{block.start}: 'file' names one file, before a non-console block"
            )
        page.files[files[0]] = "".join(text + "\n" for _, text in block.lines)
        return
    if block.info != "console":
        if dry_run or exit_code:
            page.errors.append(
                f"{page.name}:{block.start}: dry-run and exit markers belong before console blocks"
            )
        for number, text in block.lines:
            if runs_bench(text):
                page.errors.append(
                    f"{page.name}:{number}: a bench command outside a console block (it would "
                    f"never run): {text.strip()}"
                )
        return
    for number, text in _console_commands(block.lines):
        found = _bench_commands(page, number, text, exit_code, dry_run)
        if not found and page.name != "README.md":
            page.errors.append(
                f"{page.name}:{number}: console blocks hold bench commands only (show other "
                f"shell commands in a bash block): {text}"
            )
        page.commands.extend(found)


def _console_commands(lines: Sequence[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Each ``$ `` command of a console block with its line number, continuations joined."""
    current: list[str] = []
    start = 0
    for number, text in lines:
        if current:
            current.append(text.strip())
        elif text.startswith("$ "):
            start, current = number, [text[2:].strip()]
        else:
            continue  # sample output
        if current[-1].endswith("\\"):
            current[-1] = current[-1][:-1].rstrip()
            continue
        yield start, " ".join(current)
        current = []
    if current:
        yield start, " ".join(current)


def _bench_commands(
    page: Page, number: int, text: str, exit_code: int, dry_run: bool
) -> list[Command]:
    commands = []
    for part in text.split("&&"):
        try:
            words = shlex.split(part, comments=True)
        except ValueError as exc:
            page.errors.append(f"{page.name}:{number}: cannot split {part!r}: {exc}")
            continue
        env = []
        while words and ASSIGNMENT.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env.append((name, value))
        if not words or not (words[0] == "bench" or words[0].endswith("/bench")):
            continue
        command = Command(page.name, number, part.strip(), tuple(words[1:]), tuple(env),
                          exit_code, dry_run)  # fmt: skip
        if dry_run and (command_path(command.args)[:1] or ("",))[0] not in DRY_RUN_COMMANDS:
            page.errors.append(f"{command.where()}: --dry-run is for bench run, time, profile, ab")
        commands.append(command)
    return commands


# --- the click tree ------------------------------------------------------------------------------


def _subcommand(group: click.Group, name: str) -> click.Command | None:
    return group.get_command(click.Context(group, info_name=name), name)


def walk(command: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], click.Command]
]:  # fmt: skip
    """Every command of the tree with its path under ``bench`` (the group itself is ``()``)."""
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command, info_name=path[-1] if path else "bench")
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, f"bench {' '.join(path)} lists {name} but cannot load it"
            yield from walk(sub, (*path, name))


def command_path(args: Sequence[str]) -> tuple[str, ...]:
    """The subcommand path that ``bench ARGS`` invokes, e.g. ``("history", "add")``."""
    command: click.Command = cli
    path: list[str] = []
    words = list(args)
    while isinstance(command, click.Group) and words:
        word = words.pop(0)
        if word.startswith("-"):
            option = next(
                (p for p in command.params if word.split("=", 1)[0] in p.opts),
                None,
            )
            takes_value = isinstance(option, click.Option) and not (option.is_flag or option.count)
            if takes_value and "=" not in word and words:
                words.pop(0)
            continue
        sub = _subcommand(command, word)
        if sub is None:
            break
        path.append(word)
        command = sub
    return tuple(path)


# --- the convention -------------------------------------------------------------------------------

PAGES = {page_name(path): parse_page(path) for path in doc_pages()}


def test_pages_follow_the_convention():
    errors = [error for page in PAGES.values() for error in page.errors]
    assert not errors, "\n".join(errors)


def test_the_convention_is_parsed_as_documented(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: file plugin.py -->\n"
        "```python\nprint('hi')\n```\n\n"
        "```console\n$ bench run --model mlp \\\n    --dataset digits  # a comment\nsample output\n"
        "$ BENCH_PLUGINS=plugin.py bench list models\n```\n"
        "<!-- docs-test: dry-run -->\n<!-- docs-test: exit 1 -->\n"
        "```console\n$ python3 -m venv .venv && .venv/bin/bench run --suite quickstart\n```\n"
        "```bash\nbench list models\n```\n"
        "$ bench list models\n"
    )
    parsed = parse_page(page)
    assert parsed.files == {"plugin.py": "print('hi')\n"}
    first, second, third = parsed.commands
    assert first.args == ("run", "--model", "mlp", "--dataset", "digits") and first.line == 7
    assert second.env == (("BENCH_PLUGINS", "plugin.py"),) and second.args == ("list", "models")
    assert third.argv() == ["run", "--suite", "quickstart", "--dry-run"] and third.exit_code == 1
    assert len(parsed.errors) == 2  # the bash block's bench line, and the one outside any block
    assert command_path(("--plugin", "x.py", "list", "--json", "models")) == ("list", "models")
    assert command_path(("history", "--history", "h", "add", "r")) == ("history", "add")


# --- every command shown runs ---------------------------------------------------------------------


@contextmanager
def python_path(env: dict[str, str]) -> Iterator[None]:
    """``PYTHONPATH=...`` of a command, for the modules ``--plugin NAME`` imports in-process."""
    entries = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:0] = entries
    try:
        yield
    finally:
        for entry in entries:
            sys.path.remove(entry)


def run_command(runner: CliRunner, command: Command) -> str | None:
    """Run one command; None when it exited as the page says, else what went wrong."""
    env = dict(command.env)
    with python_path(env):
        result = runner.invoke(cli, command.argv(), env=env, prog_name="bench")
    if result.exit_code == command.exit_code:
        return None
    problem = [
        f"{command.where()}",
        f"exited {result.exit_code}, the page expects {command.exit_code}"
        + (" (run with --dry-run)" if command.dry_run else ""),
        result.output[-3000:],
    ]
    if result.exc_info and not isinstance(result.exception, SystemExit):
        problem.append("".join(traceback.format_exception(*result.exc_info))[-3000:])
    return "\n".join(problem)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as ``OMP_NUM_THREADS=1`` would give: the pages' small models train
    faster on one, and two threads on a shared 2-core machine mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", [name for name, page in PAGES.items() if page.commands])
def test_every_command_of_the_page_runs(name, tmp_path, monkeypatch, one_thread):
    page = PAGES[name]
    monkeypatch.chdir(tmp_path)
    if any("examples/" in command.text for command in page.commands):
        shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for file_name, content in page.files.items():
        target = tmp_path / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    runner = CliRunner()
    for command in page.commands:
        problem = run_command(runner, command)
        if problem:
            pytest.fail(problem, pytrace=False)


# --- every command, option and hook is documented ------------------------------------------------


CPU_TORCH = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


def test_getting_started_installs_the_cpu_torch_before_bench():
    """pip's default torch on Linux is the CUDA build, gigabytes a machine without a GPU never
    uses: the install page shows torch's CPU build installed first, in the block that then
    installs bench."""
    blocks = re.findall(r"```bash\n(.*?)```", (DOCS / "getting-started.md").read_text(), re.S)
    installs = [block for block in blocks if CPU_TORCH in block]
    assert installs, f"no bash block of getting-started.md runs {CPU_TORCH}"
    after = installs[0].split(CPU_TORCH, 1)[1]
    assert re.search(r"pip install (bench-harness|\.)", after)


def test_every_command_appears_in_a_console_block():
    shown = {
        command_path(command.args)[:depth]
        for page in PAGES.values()
        for command in page.commands
        for depth in range(len(command_path(command.args)) + 1)
    }
    missing = [" ".join(("bench", *path)) for path, _ in walk() if path not in shown]
    assert not missing, f"no console block of the docs shows: {', '.join(missing)}"


def test_every_option_and_argument_has_help():
    missing = []
    for path, command in walk():
        where = " ".join(("bench", *path))
        if not (command.help or command.short_help):
            missing.append(f"{where}: no docstring")
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{where} {'/'.join(param.opts)}: no help text")
            elif isinstance(param, click.Argument):
                name = (param.metavar or param.name or "").upper().rstrip(".")
                names = {name, name.removesuffix("S")}
                if not any(re.search(rf"\b{re.escape(n)}\b", command.help or "") for n in names):
                    missing.append(f"{where} {name}: the docstring does not explain it")
    assert not missing, "\n".join(missing)


def test_every_hook_is_documented():
    hookspecs = importlib.import_module(HOOKSPECS)
    hooks = {
        name: function
        for name, function in vars(hookspecs).items()
        if callable(function) and hasattr(function, "bench_spec")
    }
    assert hooks, f"no hook specification found in {HOOKSPECS}"
    undocumented = [name for name, f in hooks.items() if len((f.__doc__ or "").strip()) < 40]
    assert not undocumented, f"hooks without a docstring: {undocumented}"
    page = HOOKS_PAGE.read_text()
    assert re.search(rf"^:::\s+{re.escape(HOOKSPECS)}\s*$", page, re.M), (
        f"{page_name(HOOKS_PAGE)} lacks the directive '::: {HOOKSPECS}'"
    )
    unlisted = [name for name in hooks if f"`{name}`" not in page]
    assert not unlisted, f"{page_name(HOOKS_PAGE)} does not list: {unlisted}"


# --- the site builds, and renders in a browser ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE = [  # no first-run, sync, update or background connections: the page is all it loads
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",  # let the theme's scripts run before the DOM is dumped
]  # fmt: skip
SITE_PACKAGES = (
    "mkdocs",
    "material",
    "mkdocstrings",
    "mkdocstrings_handlers.python",
    "mkdocs_click",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mkdocs build --strict`` of the documentation: any warning fails it."""
    missing = [name for name in SITE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs the docs tools ({', '.join(missing)}): pip install '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def built_page(site: Path, source: Path) -> Path:
    """Where mkdocs writes the HTML of a docs/ page (directory URLs)."""
    relative = source.relative_to(DOCS).with_suffix("")
    folder = relative.parent if relative.name == "index" else relative
    return site / folder / "index.html"


def test_the_site_builds_with_every_page_and_the_whole_command_tree(site):
    for path in sorted(DOCS.rglob("*.md")):
        assert built_page(site, path).is_file(), f"{page_name(path)} was not built"
    reference = built_page(site, CLI_PAGE).read_text()
    for path, _ in walk():
        usage = " ".join(("bench", *path))
        assert f"{usage} [OPTIONS]" in reference, f"the CLI reference lacks {usage}"
    hooks = built_page(site, HOOKS_PAGE).read_text()
    assert f'id="{HOOKSPECS}.register_models"' in hooks


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")
def test_the_site_renders_with_navigation_and_search_in_chromium(site, tmp_path):
    done = subprocess.run(
        [CHROMIUM, *OFFLINE, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         (site / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dom = done.stdout
    html = re.search(r"<html[^>]*>", dom)
    assert html and "no-js" not in html[0], "Material's scripts did not run"
    tabs = [
        " ".join(re.sub(r"<[^>]+>", " ", link).split())
        for link in re.findall(r'class="md-tabs__link">(.*?)</a>', dom, re.S)
    ]
    assert tabs[:6] == ["Home", "Getting started", "Guides", "Studies", "Plugins", "Reference"]
    assert 'class="md-nav md-nav--primary' in dom, "no navigation"
    assert re.search(r'<input[^>]*class="md-search__input"', dom), "no search box"
    assert 'data-md-component="search-result"' in dom, "no search results panel"
