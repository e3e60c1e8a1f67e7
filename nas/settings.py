"""Settings declared once: a dataclass field with its default, help and allowed values, from which the
command line's flags and their ``--help`` derive (``add_flags``) and against which a stored value is
checked by its type (``typed``).

The run configuration (``nas.config``) and every algorithm's and evaluation strategy's ``Options`` declare
their fields with ``setting()``; nothing else spells a default, a flag or a choice list again.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from nas.errors import SettingError

_NO_FLAG, _FLAG = "no_flag", "flag"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: Iterable[str] | None = None,
            flag: bool | str = True, factory: Callable[[], Any] | None = None) -> Any:  # fmt: skip
    """A dataclass field of a setting: its default (or ``factory``), its help, its choices (a registry's
    dict stays live: what is registered later is a choice too); ``flag=False`` for a setting the command
    line does not take (derived, or given another way), a string for a flag of another name than the
    field's (``"--confirm-epochs"`` for the confirmation's ``epochs``)."""
    metadata = {"help": help, "choices": choices, _NO_FLAG: flag is False}
    if isinstance(flag, str):
        metadata[_FLAG] = flag
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def registered(registry: dict[str, str], name: str, flag: str, what: str) -> Any:
    """The class a registry (name -> ``"module:Class"``, imported only when chosen) names, or a one-line
    error for the ``flag`` that asked for an unknown ``what``."""
    import importlib

    if name not in registry:
        raise SettingError(f"{flag}: unknown {what} {name!r}; choose from {', '.join(registry)}")
    module, cls = registry[name].split(":")
    return getattr(importlib.import_module(module), cls)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_of(f: dataclasses.Field) -> str:
    """The flag that sets field ``f``: its own name, or the one its declaration gives."""
    return f.metadata.get(_FLAG) or flag_name(f.name)


def _dest(f: dataclasses.Field) -> str:
    return flag_of(f).removeprefix("--").replace("-", "_")


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that the command line takes (scalars and lists of scalars)."""
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls) if not f.metadata.get(_NO_FLAG) and _parser(hints[f.name]) is not None]


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, seen: set[str], without: tuple[str, ...] = ()
) -> None:
    """A flag for each field of ``cls`` but those named in ``without`` (fields the command sets itself), its
    default None, so that only the flags given override anything, and its help ending with the field's own
    default; ``seen``: the names already added, where a repeat is an error."""
    hints = typing.get_type_hints(cls)
    for f in (f for f in flag_fields(cls) if f.name not in without):
        if _dest(f) in seen:  # two declarations of one name: the command line could not tell them apart
            raise ValueError(f"setting {f.name!r} of {cls.__name__} is declared twice")
        seen.add(_dest(f))
        kind, default = hints[f.name], default_of(f)
        text = f.metadata.get("help", "")
        if default is not None and default is not False and default != () and "(default" not in text:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        if _base(kind) is bool:
            parser.add_argument(flag_of(f), action="store_true", default=None, help=text)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag_of(f), type=_parser(kind), default=None, choices=choices, help=text,
                                metavar=None if choices else _dest(f).upper())  # fmt: skip


def merged(options: dict[str, type]) -> type:
    """One dataclass of the fields of several ``Options`` classes (each algorithm's, say), for their flags:
    each field's help says whose it is and each owner's default; a field no flag can spell stays flagless."""
    declared: dict[str, tuple] = {}  # name -> (type, help, choices, {owner: default})
    for owner, cls in options.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            first = (hints[f.name], f.metadata.get("help", ""), f.metadata.get("choices"), {})
            declared.setdefault(f.name, first)[3][owner] = default_of(f)
    made = []
    for name, (kind, text, choices, defaults) in declared.items():
        by_value: dict[str, list[str]] = {}
        for owner, value in defaults.items():
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            by_value.setdefault(shown, []).append(owner)
        owners = "; ".join(", ".join(o) + ("" if v == "None" else f": default {v}") for v, o in by_value.items())
        flag = not any(isinstance(v, dict) for v in defaults.values())
        made.append((name, kind, setting(None, f"{text} ({owners})", choices=choices, flag=flag)))
    return dataclasses.make_dataclass("Options", made, frozen=True)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags of ``cls`` the user gave, as field values."""
    return {f.name: getattr(args, _dest(f)) for f in flag_fields(cls) if getattr(args, _dest(f), None) is not None}


def _base(kind: Any) -> Any:
    """``int | None`` -> int; other types as they are."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def _parser(kind: Any) -> Callable[[str], Any] | None:
    """How a flag's text becomes the field's value; None for fields no flag can spell (dicts)."""
    kind = _base(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return str if str in typing.get_args(kind) else None  # e.g. a name now, its resolved table later
    if kind is float:
        return finite
    if kind in (int, str, bool):
        return kind
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return lambda text: _items(text, item)
    return None


def number_in(value: object, low: float = -math.inf, high: float = math.inf) -> bool:
    """Whether a value read from a file is a finite number (not a boolean) within [low, high]: the one test
    of a stored figure, so NaN, infinity and ``true`` fail it alike."""
    return type(value) in (int, float) and math.isfinite(value) and low <= value <= high


def finite(text: str) -> float:
    """A flag's number: finite (``nan``, ``inf`` and ``1e999`` parse as floats and would pass every check
    written as a comparison)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _items(text: str, item: type) -> tuple:
    try:
        return tuple((finite if item is float else item)(t.strip()) for t in text.split(","))
    except ValueError:
        example = "e.g. 2,4" if item is int else "e.g. acc,params"
        raise argparse.ArgumentTypeError(
            f"expected {item.__name__}s separated by commas, {example}; got {text!r}"
        ) from None


def typed(cls: type, values: dict, where: str) -> Any:
    """``cls(**values)``, each value checked against its field's type first: a stored file's wrong type
    or unknown field is a one-line error naming ``where`` and the field, not a traceback later."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise SettingError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    out = {}
    for name, value in values.items():
        ok, value = _conform(hints[name], value)
        if not ok:
            raise SettingError(f"{where}: {name} must be {_describe(hints[name])}, got {value!r}")
        out[name] = value
    return cls(**out)


def _conform(kind: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (as JSON or TOML gives it) is of ``kind``; lists become tuples, ints floats."""
    if kind is Any:
        return True, value
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        for option in typing.get_args(kind):
            ok, conformed = _conform(option, value)
            if ok:
                return True, conformed
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is str:
        return isinstance(value, str), value
    origin = typing.get_origin(kind) or kind
    if origin is tuple:
        item = typing.get_args(kind)[0] if typing.get_args(kind) else Any
        if not isinstance(value, list | tuple):
            return False, value
        items = [_conform(item, v) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        key, item = typing.get_args(kind) or (Any, Any)
        pairs = [(_conform(key, k), _conform(item, v)) for k, v in value.items()]
        return all(k[0] and v[0] for k, v in pairs), {k[1]: v[1] for k, v in pairs}
    return isinstance(value, origin), value


def _describe(kind: Any) -> str:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0])}"
    if typing.get_origin(kind) is dict:
        return f"a table of {_describe(typing.get_args(kind)[1]).removeprefix('a ').removeprefix('an ')}s"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}
    return names.get(typing.get_origin(kind) or kind, getattr(kind, "__name__", str(kind)))


def choice(value: str | None, choices: Iterable[str], flag: str) -> None:
    """A setting's value must be one of its choices (or None, "the default's"); the error names its flag."""
    choices = tuple(choices)
    if value is not None and value not in choices:
        allowed = " or ".join(choices) if len(choices) == 2 else "one of " + ", ".join(choices)
        raise SettingError(f"{flag} must be {allowed}, got {value!r}")


def check_choices(settings: Any) -> None:
    """Every field of ``settings`` that declares choices holds one of them (a dataclass's own check); a
    registry's names (a dict of choices) are checked by the registry, which says more."""
    for f in dataclasses.fields(settings):
        if f.metadata.get("choices") is not None and not isinstance(f.metadata["choices"], dict):
            choice(getattr(settings, f.name), f.metadata["choices"], flag_of(f))
