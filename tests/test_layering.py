"""The layering of the whole tree, read from the source with ``ast`` (nothing is imported).

- Import order (docs/ARCHITECTURE.md, "Conventions"): every module of ``src/audioscale``
  belongs to one stage of ``ORDER``, and every import of an audioscale module, at the top
  or inside a function, points to the same stage or an earlier one.
- Torch-free modules (``TORCH_FREE``): what they import when loaded (top-level imports,
  followed through the audioscale modules they load, ``if TYPE_CHECKING:`` blocks and
  function bodies left out) never reaches ``torch``. Lazy package attributes
  (``models.__init__._LAZY``) count as the module they load.
- Size: no file over ``MAX_FILE_LINES`` lines and no function over ``MAX_FUNCTION_LINES``,
  but for the commented allow-lists.

The checkers are plain functions of module sources, so the tests at the end show that
each fails on a synthetic back-edge, torch import and long function.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "audioscale"

# one rank per entry: a stage imports from its own rank and the ranks above it
ORDER = (
    ("__init__",),  # the package root: imports nothing
    ("errors", "numerics", "sampling", "testing", "uncertainty"),  # leaves: numpy-only helpers
    ("config",),
    ("faults",),
    ("utils",),
    ("external_specs",),
    ("audio",),
    ("data",),
    ("models",),
    ("train",),
    ("embed",),
    ("metrics", "probe", "export"),  # export: our encoders behind the HEAR / X-ARES APIs
    ("evaluate",),
    ("sweep",),
    ("scaling",),
    ("report",),
    ("study",),
    ("cli",),
    ("__main__",),
)
RANK = {stage: rank for rank, stages in enumerate(ORDER) for stage in stages}

# loaded without torch: config checks, the size ladder and accounting, sweep expansion and
# the sweep's parent process (spec, store, runner, tune.json reading), external specs
TORCH_FREE = (
    "audioscale.config",
    "audioscale.errors",
    "audioscale.numerics",
    "audioscale.sampling",
    "audioscale.uncertainty",
    "audioscale.faults",
    "audioscale.utils",
    "audioscale.external_specs",
    "audioscale.audio.frames",
    "audioscale.models",
    "audioscale.models.ladder",
    "audioscale.models.arch",
    "audioscale.models.patch",
    "audioscale.models.accounting",
    "audioscale.train.recipe",
    "audioscale.train.tune",
    "audioscale.sweep.spec",
    "audioscale.evaluate.records",
    "audioscale.sweep.store",
    "audioscale.sweep.runner",
)

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60
# Over the limits today; the part of issue 22 named splits each in parallel (prune this
# list after the merge: test_allow_lists_are_current names the entries that are no longer
# needed).
ALLOWED_FILES = {}
ALLOWED_FUNCTIONS = {}


# --------------------------------------------------------------------------- reading


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def tree_sources() -> dict[str, str]:
    """Every module of the package: dotted name → source."""
    return {module_name(p): p.read_text(encoding="utf-8") for p in sorted(SRC.rglob("*.py"))}


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement loads (``from a import b``: ``a.b``, which the
    callers reduce to ``a`` when ``a.b`` is no module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{a.name}" for a in node.names]


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, int, bool]]:
    """``(dotted target, line, loaded at import time)`` for every import in ``source``;
    function bodies and ``if TYPE_CHECKING:`` blocks are not loaded at import time."""
    out: list[tuple[str, int, bool]] = []

    def visit(nodes: list[ast.stmt], loaded: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                out.extend((t, node.lineno, loaded) for t in _targets(node, module, is_package))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node.body, False)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, False)
                visit(node.orelse, loaded)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    block = getattr(node, field, None)
                    if isinstance(block, list):
                        visit([s for s in block if isinstance(s, ast.AST)], loaded)

    visit(ast.parse(source).body, True)
    return out


# --------------------------------------------------------------------------- checkers


def is_package(module: str, sources: dict[str, str]) -> bool:
    return module == "audioscale" or any(m.startswith(module + ".") for m in sources)


def back_edges(module: str, source: str, package: bool = False) -> list[str]:
    """Imports of ``module`` that point to a later stage (or to a stage ORDER lacks);
    ``package``: the module is a package's ``__init__`` (for relative imports)."""
    here = stage_of(module)
    problems = []
    if here not in RANK:
        return [f"{module}: stage {here!r} is not in ORDER"]
    for target, line, _ in imports(source, module, package):
        if target.split(".")[0] != "audioscale":
            continue
        there = stage_of(target)
        if there not in RANK:
            problems.append(f"{module}:{line} imports {target}: stage {there!r} not in ORDER")
        elif RANK[there] > RANK[here]:
            problems.append(f"{module}:{line} imports {target} ({here} → {there}: a later stage)")
    return problems


def _lazy_names(source: str) -> dict[str, str]:
    """A package's ``_LAZY = {name: submodule}`` (module ``__getattr__``), else {}."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


def _loads(target: str, sources: dict[str, str]) -> list[str]:
    """The modules an import of ``target`` runs: its packages, then the module itself
    (``pkg.name`` that is no module: ``pkg``, or the lazy attribute's submodule)."""
    parts = target.split(".")
    out = [".".join(parts[:i]) for i in range(1, len(parts))]
    if target in sources or parts[0] != "audioscale":
        return [*out, target]
    parent, name = ".".join(parts[:-1]), parts[-1]
    lazy = _lazy_names(sources.get(parent, ""))
    return [*out, f"{parent}.{lazy[name]}"] if name in lazy else out


def torch_path(module: str, sources: dict[str, str]) -> list[str] | None:
    """The chain of import-time imports from ``module`` to ``torch``, or None."""
    seen: set[str] = set()

    def walk(mod: str, chain: list[str]) -> list[str] | None:
        if mod.split(".")[0] == "torch":
            return [*chain, mod]
        if mod in seen or mod not in sources:
            return None
        seen.add(mod)
        for target, _, loaded in imports(sources[mod], mod, is_package(mod, sources)):
            if not loaded:
                continue
            for m in _loads(target, sources):
                found = walk(m, [*chain, mod])
                if found:
                    return found
        return None

    for m in _loads(module, sources):
        found = walk(m, [])
        if found:
            return found
    return None


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Functions (and methods) longer than ``limit`` lines: name → lines, def to last line."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out[node.name] = n
    return out


def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    files, functions = {}, {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        source = path.read_text(encoding="utf-8")
        n = len(source.splitlines())
        if n > MAX_FILE_LINES:
            files[rel] = n
        for name, lines in long_functions(source).items():
            functions[f"{rel}::{name}"] = lines
    return files, functions


# --------------------------------------------------------------------------- the tree


def test_every_import_points_down_the_order():
    sources = tree_sources()
    problems = [
        p for mod, src in sources.items() for p in back_edges(mod, src, is_package(mod, sources))
    ]
    assert not problems, "\n".join(problems)


def test_torch_free_modules_never_load_torch():
    sources = tree_sources()
    missing = [m for m in TORCH_FREE if m not in sources]
    assert not missing, f"TORCH_FREE names modules that do not exist: {missing}"
    paths = {m: torch_path(m, sources) for m in TORCH_FREE}
    bad = {m: " → ".join(p) for m, p in paths.items() if p}
    assert not bad, bad


def test_no_file_or_function_over_the_limits():
    files, functions = _sizes()
    over_files = {k: v for k, v in files.items() if k not in ALLOWED_FILES}
    over_functions = {k: v for k, v in functions.items() if k not in ALLOWED_FUNCTIONS}
    assert not over_files, f"files over {MAX_FILE_LINES} lines: {over_files}"
    assert not over_functions, f"functions over {MAX_FUNCTION_LINES} lines: {over_functions}"


def test_allow_lists_are_current():
    """An entry that is now within the limits (or gone) is removed from its list."""
    files, functions = _sizes()
    stale = sorted(set(ALLOWED_FILES) - set(files)) + sorted(
        set(ALLOWED_FUNCTIONS) - set(functions)
    )
    assert not stale, f"no longer over the limits: remove {stale} from the allow-lists"


# --------------------------------------------------------------------------- the checkers fail


def test_a_back_edge_is_caught_at_the_top_and_inside_a_function():
    fake = "from audioscale.config import RunConfig\n\ndef f():\n    import audioscale.sweep.spec\n"
    problems = back_edges("audioscale.models.fake", fake)
    assert len(problems) == 1 and "models → sweep" in problems[0] and ":4 " in problems[0]
    top = "from audioscale.scaling.learning import ARCH_KEYS\n"
    assert back_edges("audioscale.external_specs", top)
    assert back_edges("audioscale.train.fake", "from audioscale.nowhere import x\n")
    assert not back_edges("audioscale.sweep.fake", "from audioscale.models import arch\n")
    rel = "from ..sweep import spec\n"  # relative imports resolve from the module's package
    assert back_edges("audioscale.models.fake", rel) and not back_edges("audioscale.cli.x", rel)


def test_a_torch_import_is_caught_through_other_modules():
    sources = {
        "audioscale": "",
        "audioscale.models": '_LAZY = {"MAE": "mae"}\n',
        "audioscale.models.mae": "import torch\n",
        "audioscale.models.light": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\n\ndef f():\n    import torch\n",
        "audioscale.models.user": "from audioscale.models import light\n",
        "audioscale.models.bad": "from audioscale.models import MAE\n",
        "audioscale.models.bad2": "from audioscale.models.user import x\n"
        "import audioscale.models.mae\n",
    }
    assert torch_path("audioscale.models.light", sources) is None
    assert torch_path("audioscale.models.user", sources) is None
    assert torch_path("audioscale.models.bad", sources)[-2:] == ["audioscale.models.mae", "torch"]
    assert torch_path("audioscale.models.bad2", sources)[-1] == "torch"


def test_a_long_function_is_caught():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}") == {"f": MAX_FUNCTION_LINES + 1}
    assert long_functions(f"def f():\n{body[: -len('    x59 = 59') - 1]}") == {}
