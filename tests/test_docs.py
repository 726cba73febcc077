"""``docs/methods.md``, the maths the code cites: every citation resolves, and the page's
references to the code (dotted names, paths, kernel functions) exist.

A section is cited as ``docs/methods.md, <heading>`` (the heading may start on the next
line, after a comment's ``#``); a bare ``docs/methods.md`` cites the whole page. This file,
which states the rule, is not scanned.
"""

import importlib
import re
from pathlib import Path

from helpers import PACKAGE, ROOT

METHODS = ROOT / "docs" / "methods.md"
SCANNED = ("sj_ext", "tests", "benchmarks", "recipes", "README.md")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".cu", ".cuh", ".h", ".cfg", ".toml", ".txt"}
KERNELS = PACKAGE / "fused_lif" / "kernels"

CITATION = re.compile(r"docs/methods\.md`*,[\s#]*([^\n]*)")
DOTTED = re.compile(r"`(sj_ext(?:\.\w+)+)`")
PATH = re.compile(r"`((?:sj_ext|docs|tests|recipes|benchmarks)/[^`\s]*)`")
KERNEL_NAME = re.compile(r"`(sj_(?!ext)\w+)`")


def scanned_files():
    this = Path(__file__).resolve()
    for name in SCANNED:
        top = ROOT / name
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if (
                path.is_file()
                and path.suffix in TEXT_SUFFIXES
                and "__pycache__" not in path.parts
                and path.resolve() != this
            ):
                yield path


def headings(markdown: str) -> list[str]:
    """The headings of a Markdown text (``#`` lines outside code fences), without the ``#``."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.append(line.lstrip("#").strip())
    return found


def resolves(cited: str, names: list[str]) -> bool:
    """Whether the text after ``docs/methods.md,`` starts with one of the headings ``names``."""
    text = cited.lower()
    return any(
        text.startswith(h.lower()) and not text[len(h) : len(h) + 1].isalnum() for h in names
    )


def citations(text: str) -> list[tuple[int, str]]:
    """``(line, cited text)`` of every section citation in ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in CITATION.finditer(text)]


def test_every_cited_section_is_a_heading_of_methods_md():
    names = headings(METHODS.read_text())
    assert {"Notation", "DS-ATGO", "Grouping", "CL-SNN", "TET", "Accuracy anchors"} <= set(names)
    assert "The firing-rate trap (MNIST)" in names
    assert len(names) == len(set(names)), "a heading cited by name must be unique"
    # the matcher rejects what is not a heading (so the check below is not vacuous)
    assert citations("see docs/methods.md, DS-ATGO).") == [(1, "DS-ATGO).")]
    assert not resolves("DS-ATGOX", names) and not resolves("and in each docstring", names)

    cited, unresolved = 0, []
    for path in scanned_files():
        for line, text in citations(path.read_text()):
            cited += 1
            if not resolves(text, names):
                unresolved.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()!r}")
    assert cited >= 15, f"only {cited} section citations found: is the citation pattern stale?"
    assert not unresolved, "citations of docs/methods.md naming no heading:\n" + "\n".join(
        unresolved
    )


def test_nothing_cites_the_private_notes():
    old = "METHODS.md"  # the team's notes outside the repository (case-sensitive)
    stale = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in scanned_files()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if old in line
    ]
    assert not stale, f"cite docs/methods.md instead of {old}:\n" + "\n".join(stale)


def _resolve_dotted(name: str):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def test_code_named_in_methods_md_exists():
    text = METHODS.read_text()
    missing = []
    for name in sorted(set(DOTTED.findall(text))):
        try:
            _resolve_dotted(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name} ({err})")
    missing += [p for p in sorted(set(PATH.findall(text))) if not (ROOT / p).exists()]
    kernel_source = "".join(p.read_text() for p in sorted(KERNELS.iterdir()) if p.is_file())
    kernels = sorted(set(KERNEL_NAME.findall(text)))
    missing += [k for k in kernels if not re.search(rf"\b{k}\s*\(", kernel_source)]
    assert len(DOTTED.findall(text)) >= 20 and len(kernels) >= 10
    assert not missing, "docs/methods.md names what the code does not have: " + ", ".join(missing)
