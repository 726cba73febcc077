"""The house's shape: two parts, each in layers, and no import that runs back up or round.

``sj_ext`` holds the plugin (what goes upstream into SpikingJelly: equations,
kernels, neurons, surrogates, losses, models); ``sj_ext.app`` holds the
training application (recipes, engine, data, monitors, report, command line).
The plugin never imports the application; inside each part a module imports
only from its own layer or below; no chain of imports comes back to where it
started. Read from the source (``ast``), every import counted, those inside
functions too, so the rules hold for every module whether a test imports it or not.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sj_ext"

#: low to high; a module's layer is that of its longest listed prefix (names without ``sj_ext.``)
PLUGIN = [
    # foundations: the option lists, the parameters, the kernel source
    (
        "options",
        "functional.params",
        "functional.tet",
        "fused_lif.source",
        "models.layout",
        "loss.common",
    ),
    ("surrogate",),
    ("functional",),  # the torch reference of every equation
    ("fused_lif",),  # the kernels, checked against it
    ("neuron",),  # SpikingJelly node shells over both
    ("models", "loss"),  # the registered components
]
APP = [
    # foundations: recipe schema, safe YAML, run files, pure helpers
    (
        "app.checks",
        "app.registry",
        "app.schema",
        "app.safe_yaml",
        "app.runfiles",
        "app.pairs",
        "app.class_health",
        "app.data.files",
        "app.data.spec",
        "app.data.subset",
        "app.report.axes",
        "app.engine.errors",
        "app.engine.signals",
        "app.engine.distributed",
        "app.engine.host_memory",
    ),
    ("app.data", "app.optim"),  # the application's registered components
    (
        "app.monitor",
        "app.energy",
        "app.report",
        "app.preflight",
        "app.components",
    ),  # what the methods do
    ("app.recipe",),  # names -> objects
    ("app.engine",),
    ("app.sweep", "app.compare", "app.validate"),  # the sub-commands' handlers
    ("app.cli",),
]
#: every module's layer: the plugin's below the application's, which builds on all of it
LAYERS = PLUGIN + APP + [("__main__",)]


def layer_of(module: str) -> int:
    """The layer of ``module`` (dotted, without ``sj_ext.``); a package root is a foundation."""
    best, layer = -1, len(PLUGIN) if in_app(module) else 0
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), number
    return layer


def in_app(module: str) -> bool:
    """Whether ``module`` is of the application (``python -m sj_ext`` runs its command line)."""
    return module in ("app", "__main__") or module.startswith("app.")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known) -> set[str]:
    """The sj_ext modules that ``name`` imports anywhere (resolved, without ``sj_ext.``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("sj_ext")]
            found |= {t.removeprefix("sj_ext").lstrip(".") for t in targets}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("sj_ext"):
                target = node.module.removeprefix("sj_ext").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from . import data`: the submodule itself
                sub = f"{target}.{alias.name}".lstrip(".")
                found.add(sub if sub in known else target)
    return found - {"", name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) & set(known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_placed_and_the_map_names_no_missing_module():
    known = modules()
    prefixes = [p for layer in LAYERS for p in layer]
    missing = [p for p in prefixes if not any(m == p or m.startswith(p + ".") for m in known)]
    placed = [m for m in known if any(m == p or m.startswith(p + ".") for p in prefixes)]
    assert missing == []
    assert sorted(set(known) - set(placed)) == ["", "app"]


def test_the_two_parts_are_two_folders():
    known = modules()
    assert {m for m in known if in_app(m)} >= {"app.cli", "app.recipe", "app.engine", "app.report"}
    assert not any(in_app(p) for layer in PLUGIN for p in layer)
    assert all(in_app(p) for layer in APP + LAYERS[-1:] for p in layer)


@pytest.mark.parametrize("name", sorted(n for n in modules() if not in_app(n)))
def test_the_plugin_imports_nothing_of_the_application(name):
    known = modules()
    into_app = sorted(t for t in imports(name, known[name], known) if in_app(t))
    assert into_app == [], f"sj_ext.{name} (plugin) imports the application: {into_app}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_imports_a_higher_layer(name):
    known = modules()
    upward = sorted(
        target for target in imports(name, known[name], known) if layer_of(target) > layer_of(name)
    )
    assert upward == [], f"sj_ext.{name} (layer {layer_of(name)}) imports {upward}"


def test_no_chain_of_imports_comes_back_round():
    assert circles(graph()) == []


def test_the_circle_finder_finds_a_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_equations_load_without_the_neurons():
    """``sj_ext.functional`` (the torch reference) imports no neuron, kernel or application."""
    edges = graph()
    seen, todo = set(), ["functional"]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    reached = sorted(m for m in seen if m.startswith(("neuron", "fused_lif", "app")))
    assert reached == []


#: a recipe key (``model.args``, ``train.epochs`` ...) or the project's own install line:
#: the application's words, which the plugin leaves to it
RECIPE_WORDS = re.compile(
    r"\b(?:data|model|neuron|loss|optim|schedule|train|monitor)\."
    r"(?:args|name|root|T|epochs|backend|surrogate|every|batch_size)\b|pip install -e"
)


def plugin_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "app" not in p.relative_to(PACKAGE).parts)


def test_the_plugin_names_no_recipe_key():
    """Plugin errors name the argument (``first_window``); the application adds the recipe
    path (``model.args: ...``)."""
    found = {
        f"{path.relative_to(PACKAGE)}:{number}": line.strip()
        for path in plugin_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if RECIPE_WORDS.search(line)
    }
    assert found == {}
    assert RECIPE_WORDS.search('raise ValueError(f"model.args.variant must be ...")')
    assert len(plugin_files()) > 20
    assert not any(p.relative_to(PACKAGE).parts[0] == "app" for p in plugin_files())


# ----------------------------------------------------------------------------------------------
# Sizes a reader can hold: no module over 400 lines, no function body over 50. A function is
# counted from its first statement after the docstring, so that an explicit signature (the
# neurons' typed arguments, one a line) and its documentation cost nothing.
MAX_FILE_LINES = 400
MAX_BODY_LINES = 50


def oversized(source: str, name: str) -> list[str]:
    """``name``'s module and functions over the limits, as ``'name: N lines'`` lines."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_FILE_LINES:
        found.append(f"{name}: {lines} lines (at most {MAX_FILE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if (
            len(body) > 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body = body[1:]  # the docstring
        length = node.end_lineno - body[0].lineno + 1
        if length > MAX_BODY_LINES:
            found.append(f"{name}.{node.name}: a body of {length} lines (at most {MAX_BODY_LINES})")
    return found


def test_no_module_or_function_is_over_its_size():
    offenders = [
        line
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in oversized(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    ]
    assert not offenders, "over the size limits:\n" + "\n".join(offenders)


def test_the_size_check_names_a_long_module_and_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY_LINES + 1))
    long_function = f'def f():\n    """doc"""\n{body}\n'
    assert oversized(long_function, "m") == [f"m.f: a body of 51 lines (at most {MAX_BODY_LINES})"]
    assert (
        oversized(long_function.replace(f"    x{MAX_BODY_LINES} = {MAX_BODY_LINES}\n", ""), "m")
        == []
    )
    long_module = "x = 1\n" * (MAX_FILE_LINES + 1)
    assert oversized(long_module, "m") == [f"m: 401 lines (at most {MAX_FILE_LINES})"]
