"""The repository's shape: stage packages whose imports run one way, small modules whose names
say their job, one module per command, and no reference to files outside the repository."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "harness"
PLUGINS = REPO / "plugins"
MAX_LINES = 400

# The stages of harness/, lowest first. A module may import the foundations, its own stage and
# the stages listed before it, never one listed after it (docs/architecture.md draws this).
LAYERS = [
    {"errors", "options", "tasks", "data", "devices"},  # foundations
    {"registry"},
    {"planning"},
    {"results"},
    {"reporting"},
    {"training", "measuring"},  # the work of one run
    {"execution"},
    {"comparing"},
    {"history"},
    {"cli", "api", "__main__"},  # the interfaces
]


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = ["bench_plugins" if p == "plugins" else p for p in relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports from harness or bench_plugins, resolved to a module (for
    ``from package import module``) and outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                is_module = any(
                    (REPO / Path(*full.replace("bench_plugins", "plugins").split(".")))
                    .with_suffix(suffix)
                    .exists()
                    for suffix in (".py", "")
                )
                yield full if is_module else node.module


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) == 1:
        return None  # the package itself: constants, the hook marker, the lazy public API
    return next(i for i, layer in enumerate(LAYERS) if parts[1] in layer)


def test_harness_has_at_most_eight_modules_at_its_root():
    root = sorted(p.name for p in HARNESS.glob("*.py"))
    assert len(root) <= 8, root


def test_every_harness_package_is_a_known_stage():
    packages = {p.name for p in HARNESS.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in HARNESS.glob("*.py")} - {"__init__"}
    assert packages | modules == set().union(*LAYERS)


@pytest.mark.parametrize(
    "path", python_files(HARNESS) + python_files(PLUGINS), ids=lambda p: str(p.relative_to(REPO))
)
def test_modules_stay_small(path: Path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_imports_run_one_way_between_stages():
    against = []
    for path in python_files(HARNESS):
        source = module_name(path)
        own = layer_of(source)
        for target in imports(path):
            assert not target.startswith("bench_plugins"), f"{source} imports {target}"
            layer = layer_of(target)
            if own is not None and layer is not None and layer > own:
                against.append(f"{source} -> {target}")
    assert not against, "imports of a later stage:\n" + "\n".join(against)


def test_no_import_cycles():
    modules = {module_name(p): p for p in python_files(HARNESS) + python_files(PLUGINS)}
    graph = {name: {t for t in imports(path) if t in modules} for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_module_names_are_unique_and_none_is_another_plus_a_suffix():
    """``report`` beside ``reporting`` or ``compare`` beside ``compare_render`` is what this
    forbids. The command modules of cli/ are named after their commands, and each study package
    of plugins/procedures/ has its own ``study`` and ``report``."""
    parallel = {"study", "report"}
    stems = [
        p.stem
        for p in python_files(HARNESS) + python_files(PLUGINS)
        if p.stem != "__init__"
        and p.parent.name != "cli"
        and not (p.parent.parent.name == "procedures" and p.stem in parallel)
    ]
    assert len(stems) == len(set(stems)), sorted(s for s in stems if stems.count(s) > 1)
    clashes = [(a, b) for a in stems for b in stems if a != b and b.startswith(a)]
    assert not clashes


def test_cli_has_one_module_per_command_named_after_it():
    shared = {"__init__", "_shared", "_sessions"}  # what several commands share
    modules = {p.stem for p in (HARNESS / "cli").glob("*.py")} - shared
    assert modules == {name.replace("-", "_") for name in COMMANDS}
    assert all(module == name.replace("-", "_") for name, (module, *_) in COMMANDS.items())


def test_nothing_refers_to_files_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    forbidden = ("DESIGN" + ".md", "../" + "shared", "seeds/" + "0")
    found = []
    for name in filter(None, tracked):
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".npz", ".pt", ".ipynb"}:
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {word}" for word in forbidden if word in text]
    assert not found


def test_every_package_is_installed():
    """``pyproject.toml`` lists its packages by name: a new folder left out of the list works
    from a checkout (an editable install) but is missing from a built one."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(root.parent).parts).replace("plugins", "bench_plugins", 1)
        for root in (HARNESS, PLUGINS)
        for init in root.rglob("__init__.py")
    }
    assert found - listed == set()
