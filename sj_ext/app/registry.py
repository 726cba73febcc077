"""Name -> builder registries: how a recipe's names become objects.

Each registry maps a name to a callable. A recipe entry ``{name: N, args: {...}}``
is built as ``REGISTRY.build(N, **args)``; :meth:`Registry.check` validates the
name and the argument names against the builder's signature before anything is
built, so a recipe fails in ``sj-ext validate`` rather than mid-run. The
registries belong to the application: the plugin's components are plain
classes and functions, named here by :mod:`sj_ext.app.components`, which also
re-exports the registries filled. Extending the application means registering
a builder, never editing the engine::

    from sj_ext.app.components import MODELS

    def my_net(num_classes: int, spiking_neuron, width: int = 64): ...

    MODELS.register("my_net", my_net)
"""

import inspect
from collections.abc import Callable

from ..options import did_you_mean

__all__ = [
    "Registry",
    "DATASETS",
    "MODELS",
    "NEURONS",
    "SURROGATES",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
]


class Registry:
    """A named table of builders.

    :param kind: what the entries are (used in error messages), e.g. ``'model'``
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}
        self._value_checks: dict[str, Callable] = {}

    def register(self, name: str, builder: Callable | None = None, *, check=None):
        """Register ``builder`` under ``name``; usable as a decorator.

        ``check``, optional, takes the builder's keyword arguments and raises
        ``ValueError`` (or ``TypeError``) for values the builder would refuse,
        cheaply and without building (e.g. without reading a dataset's files).
        """

        def add(fn):
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            if check is not None:
                self._value_checks[name] = check
            return fn

        return add if builder is None else add(builder)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                f"known: {', '.join(self.names())}"
            )
        return self._entries[name]

    def check(self, name: str, args: dict, supplied: tuple[str, ...] = ()) -> list[str]:
        """Problems with building ``name`` from ``args`` (empty when none).

        ``supplied`` names the arguments the engine passes itself (e.g.
        ``num_classes``); they may not appear in ``args``.
        """
        if name not in self._entries:
            return [
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                f"known: {', '.join(self.names())}"
            ]
        params = inspect.signature(self._entries[name]).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return []
        accepted = [p for p in params if p not in supplied]
        return [
            f"{self.kind} {name!r} takes no argument {key!r}{did_you_mean(key, accepted)}; "
            f"it takes: {', '.join(accepted) or 'none'}"
            for key in args
            if key not in accepted
        ]

    def check_values(self, name: str, kwargs: dict) -> list[str]:
        """What the registered value check of ``name`` says of ``kwargs`` (empty when fine)."""
        check = self._value_checks.get(name)
        try:
            if check is not None:
                check(**kwargs)
        except (ValueError, TypeError) as e:
            return [str(e)]
        return []

    def build(self, name: str, /, *args, **kwargs):
        return self.get(name)(*args, **kwargs)


DATASETS = Registry("dataset")
MODELS = Registry("model")
NEURONS = Registry("neuron")
SURROGATES = Registry("surrogate")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")
