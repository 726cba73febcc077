r"""YAML as pure, bounded data: recipes and run files, hostile or broken ones included.

:func:`load` parses with ``yaml.SafeLoader`` (no Python objects) plus three
things: ``1e-3`` reads as a float (as in YAML 1.2), a key repeated in one
mapping is an error naming it and both its lines (PyYAML would keep the last
value silently; YAML forbids it), and the document is bounded so that a
hostile file ends in a :class:`YamlInputError` at once instead of exhausting
memory or the stack:

* at most :data:`MAX_BYTES` of UTF-8 text (:func:`read_text`);
* at most :data:`MAX_NODES` values *after expanding aliases*: a node's size is
  :math:`1 + \sum` its children's sizes, an alias counts the full size of the
  node it names, so a "billion laughs" file (``b: [*a, *a, ...]`` nested)
  is refused after composing a few lines, in time and memory linear in the file;
* at most :data:`MAX_DEPTH` nested collections.

This module imports only PyYAML, so it is cheap to use anywhere.
"""

import re
from pathlib import Path

import yaml
from yaml.events import AliasEvent

__all__ = [
    "MAX_BYTES",
    "MAX_NODES",
    "MAX_DEPTH",
    "YamlInputError",
    "DuplicateKeyError",
    "load",
    "read_text",
]

MAX_BYTES = 1 << 18  #: largest YAML file read (256 KiB; a recipe is ~2 KB)
MAX_NODES = 10_000  #: most values in a document, aliases expanded (a recipe: ~100)
MAX_DEPTH = 64  #: deepest nesting of lists and mappings


class YamlInputError(ValueError):
    """A YAML file or document over one of this module's bounds, not UTF-8 text, or with a
    key given twice in one mapping (:class:`DuplicateKeyError`)."""


class DuplicateKeyError(YamlInputError):
    """A mapping of the document holds one key twice."""


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` counting nodes (aliases expanded) and depth as it composes, and
    refusing a key repeated in a mapping."""

    def __init__(self, stream):
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its expanded size, once composed
        self._checked: set[int] = set()  # id(node) of the mappings checked for duplicates

    def _count(self, n: int, mark) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise YamlInputError(
                f"more than {MAX_NODES} values once aliases are expanded (near line "
                f"{mark.line + 1}); a recipe has about a hundred"
            )

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None and id(node) not in self._sizes:
                raise YamlInputError(
                    f"alias *{event.anchor} at line {event.start_mark.line + 1} refers to a "
                    "collection that contains it (a recursive structure)"
                )
            if node is not None:
                self._count(self._sizes[id(node)], event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
        before = self._nodes
        self._count(1, mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def flatten_mapping(self, node):
        """Refuse a key that ``node`` holds twice, then merge its ``<<`` entries.

        Checked once per node, at its first flattening (the only step that changes
        ``node.value``), so merged entries, which a node's own keys may override as YAML
        intends, are never taken for duplicates.
        """
        if id(node) not in self._checked:
            self._checked.add(id(node))
            _refuse_duplicates(node, self.construct_object)
        super().flatten_mapping(node)


def _refuse_duplicates(node: yaml.MappingNode, construct) -> None:
    """:class:`DuplicateKeyError` naming the first key ``node`` holds twice and both lines."""
    first_line = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key, line = construct(key_node, deep=True), key_node.start_mark.line + 1
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key: SafeLoader refuses it
            continue
        if seen is not None:
            where = f"twice at line {line}" if seen == line else f"at lines {seen} and {line}"
            raise DuplicateKeyError(f"duplicate key {key!r} {where}")
        first_line[key] = line


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(text: str):
    """Parse YAML ``text`` as pure data (``1e-3`` is a float), within the bounds above.

    :raises YamlInputError: over :data:`MAX_NODES` or :data:`MAX_DEPTH`
    :raises yaml.YAMLError: not valid YAML
    """
    if len(text) > MAX_BYTES:
        raise YamlInputError(f"{len(text)} characters, more than the {MAX_BYTES} allowed")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``, at most :data:`MAX_BYTES` of it.

    :raises YamlInputError: the file is larger, or not UTF-8
    :raises OSError: it cannot be read
    """
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlInputError(f"larger than {MAX_BYTES} bytes; a recipe has a few kilobytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlInputError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from e
