"""The house's layering: no module of sj_ext imports, at its top level, one of a higher layer.

Read from the source (``ast``), so the rule holds for every module whether a
test imports it or not. Imports inside functions are not counted: they are
the command line's per-command imports; what a module loads when it runs is
checked for the functional layer, the one below the kernels and the neurons.
"""

import ast
import textwrap
from pathlib import Path

import pytest
from helpers import PACKAGE

#: low to high; a module's layer is that of its longest listed prefix
LAYERS = [
    # foundations: the registries, the options' choices, run files, pure helpers, the kernel
    # source, the parameters
    (
        "registry",
        "options",
        "schema",
        "safe_yaml",
        "runfiles",
        "class_health",
        "functional.params",
        "functional.tet",
        "fused_lif.source",
        "data.files",
        "data.spec",
        "data.subset",
        "models.layout",
        "loss.common",
        "report_axes",
        "engine.errors",
        "engine.signals",
        "engine.distributed",
    ),
    ("surrogate",),
    ("functional",),  # the torch reference of every equation
    ("fused_lif",),  # the kernels, checked against it
    ("neuron",),  # SpikingJelly node shells over both
    ("models", "data", "loss", "optim"),  # the registered components
    ("monitor", "energy", "report", "report_figures", "preflight"),  # what the methods do
    ("recipe",),  # names -> objects
    ("engine",),
    ("sweep", "compare"),
    ("cli", "__main__"),
]


def layer_of(module: str) -> int:
    """The layer of ``module`` (dotted, without ``sj_ext.``); the package root is a foundation."""
    best, layer = -1, 0
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), number
    return layer


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def top_level_imports(name: str, path: Path, known) -> set[str]:
    """The sj_ext modules the module body of ``name`` imports (resolved, no ``sj_ext.``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.parse(path.read_text()).body:
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


def test_every_module_is_placed_and_the_map_names_no_missing_module():
    known = modules()
    prefixes = [p for layer in LAYERS for p in layer]
    missing = [p for p in prefixes if not any(m == p or m.startswith(p + ".") for m in known)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_imports_a_higher_layer(name):
    known = modules()
    upward = sorted(
        target
        for target in top_level_imports(name, known[name], known)
        if layer_of(target) > layer_of(name)
    )
    assert upward == [], f"sj_ext.{name} (layer {layer_of(name)}) imports {upward}"


def test_the_functional_layer_loads_no_neuron_and_no_kernel(run_python):
    out = run_python(
        textwrap.dedent(
            """
        import sys
        import sj_ext.functional
        print(sorted(m for m in sys.modules if m.startswith(("sj_ext.neuron", "sj_ext.fused_lif"))))
        """
        )
    )
    assert out.strip() == "[]"
