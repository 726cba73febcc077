"""One way to check structured input: a mapping against a *spec*, every problem named by its path.

A spec maps each key to a :class:`Field` (its types, default, choices and any
further rule) or to a nested spec (a sub-mapping). :func:`check` walks a
value against it and returns the value with defaults filled, and the
problems as ``'key.path: what is wrong'`` lines: unknown keys (with a close
match, "did you mean"), missing required keys, wrong types, choices and
rules. The recipe schema (:mod:`sj_ext.app.schema`), a sweep's grid file
(:mod:`sj_ext.app.sweep.grid`), a results file (:mod:`sj_ext.app.compare`)
and a run folder's records (:mod:`sj_ext.app.report`) are all checked so;
each caller raises its own error with the file's name and the lines.

Torch-free and dependency-free (the standard library and the registries' name matching).
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..options import close_match, did_you_mean

__all__ = [
    "REQUIRED",
    "Field",
    "check",
    "check_items",
    "raise_problems",
    "INT",
    "NUMBER",
    "STR",
    "BOOL",
    "DICT",
    "LIST",
    "OPT_INT",
    "OPT_NUMBER",
    "OPT_STR",
    "OPT_DICT",
    "OPT_LIST",
]

#: the default of a key that must be given
REQUIRED = object()

INT, NUMBER, STR, BOOL, DICT, LIST = (int,), (int, float), (str,), (bool,), (dict,), (list,)
OPT_INT, OPT_NUMBER, OPT_STR = (int, None), (int, float, None), (str, None)
OPT_DICT, OPT_LIST = (dict, None), (list, None)


@dataclass(frozen=True)
class Field:
    """One key of a spec.

    :param types: the types it takes (``None``: null); a bool is no number
    :param default: its value when absent (:data:`REQUIRED`: it must be given)
    :param choices: the values it (or each item of a list) may take
    :param help: what it is, shown when it is missing
    :param rule: a further check of a well-typed value: what is wrong, or None
    """

    types: tuple
    default: Any = REQUIRED
    choices: tuple = ()
    help: str = ""
    rule: Callable[[Any], str | None] | None = None

    def problem(self, value) -> str | None:
        """What is wrong with ``value`` for this key, or None."""
        ok = any(
            value is None if t is None else isinstance(value, t) and not _bool_as_number(value, t)
            for t in self.types
        )
        if not ok:
            names = " or ".join("null" if t is None else t.__name__ for t in self.types)
            return f"expected {names}, got {type(value).__name__} {value!r}"
        for item in value if isinstance(value, list) else [value]:
            if self.choices and item not in self.choices:
                hint = did_you_mean(item, self.choices)
                return f"must be one of {list(self.choices)}, got {item!r}{hint}"
        return None if self.rule is None or value is None else self.rule(value)


def _bool_as_number(value, t) -> bool:
    return isinstance(value, bool) and t is not bool


def check(spec: dict, value, path: str = "", closed: bool = True) -> tuple[dict, list[str]]:
    """``value`` checked against ``spec``: ``(value with the defaults filled, problems)``.

    :param path: where ``value`` is (``'configurations[0]'``), the prefix of every key path
    :param closed: keys outside ``spec`` are problems (else they are kept, unchecked)
    :return: the checked mapping (deep copies), and ``'path.key: what is wrong'`` lines
    """
    if not isinstance(value, dict):
        where = f"{path}: " if path else ""
        return {}, [f"{where}expected a mapping, got {type(value).__name__} {value!r}"]
    out: dict = {} if closed else copy.deepcopy(value)
    problems: list[str] = []
    _walk(spec, value, path + "." if path else "", out, problems, closed)
    return out, problems


def check_items(spec: dict, items: list, path: str, closed: bool = True):
    """Every mapping of list ``items`` checked against ``spec`` (:func:`check`), each at
    ``path[i]``: ``(checked items, problems)``."""
    checked, problems = [], []
    for i, item in enumerate(items):
        out, found = check(spec, item, f"{path}[{i}]", closed)
        checked.append(out)
        problems += found
    return checked, problems


def raise_problems(error: Callable[[str], Exception], problems: list[str], source: str = ""):
    """Raise ``error`` with one line per problem (each after ``source: ``), if there are any."""
    if problems:
        raise error("\n".join(f"{source}: {p}" if source else p for p in problems))


def _walk(spec: dict, value: dict, prefix: str, out: dict, problems: list[str], closed: bool):
    meant = set()  # the keys a misspelt key stands for: their absence is no second problem
    for key in value:
        if closed and key not in spec:
            meant.add(close_match(key, spec))
            problems.append(
                f"{prefix}{key}: unknown key{did_you_mean(key, spec)}; "
                f"allowed here: {', '.join(spec)}"
            )
    for key, field in spec.items():
        path = prefix + key
        if isinstance(field, dict):
            sub = value.get(key, {})
            if sub is None:
                sub = {}
            if not isinstance(sub, dict):
                problems.append(f"{path}: expected a mapping, got {type(sub).__name__} {sub!r}")
                continue
            out[key] = {} if closed else copy.deepcopy(sub)
            _walk(field, sub, path + ".", out[key], problems, closed)
        elif key in value:
            problem = field.problem(value[key])
            if problem:
                problems.append(f"{path}: {problem}")
            out[key] = copy.deepcopy(value[key])
        elif field.default is REQUIRED and key not in meant:
            problems.append(f"{path}: missing required key ({field.help or 'no default'})")
        else:
            out[key] = copy.deepcopy(field.default)
