"""What every component's config dataclass shares: fields with help text, and one check of their choices.

Each component (item encoder, sequence backbone, reasoning head, objective, data, training) declares its
settings as a dataclass next to its code; allowed values are ``Literal`` types, checked here and nowhere
else, so a new choice is added in one place. ``hybrid.config`` composes the components into the flat
command line and presets.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any, Literal

from .errors import ConfigError


def help_field(text: str, default: Any = dataclasses.MISSING, **kwargs) -> Any:
    """A dataclass field with ``--help`` text."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"help": text}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": text}, **kwargs)


def literal_choices(annotation: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation, else None."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for part in typing.get_args(annotation):  # Optional[Literal[...]]
        if typing.get_origin(part) is Literal:
            return (*typing.get_args(part), None)
    return None


def check_choices(config: Any) -> None:
    """Refuse any field of a config dataclass whose value is not among its ``Literal`` type's choices, or not of
    its number or flag type (a preset's values reach here unconverted: JSON null, 16.0, true, NaN)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        choices = literal_choices(hints[field.name])
        value = getattr(config, field.name)
        if choices is not None and value not in choices:
            allowed = tuple(choice for choice in choices if choice is not None)
            raise ConfigError(f"{field.name}={value!r} is not one of {allowed}.")
        if choices is None:
            setattr(config, field.name, checked_scalar(field.name, value, hints[field.name]))


SCALARS = {int: "a whole number", float: "a finite number", bool: "true or false"}


def checked_scalar(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the int, float or bool its annotation (optionally ``| None``) asks for; 16.0 -> 16 and 2 ->
    2.0 are taken, anything else (a flag for a number, NaN, null where a value is needed) is refused."""
    kinds = [kind for kind in (typing.get_args(annotation) or (annotation,)) if kind is not type(None)]
    optional = type(None) in typing.get_args(annotation)
    if len(kinds) != 1 or kinds[0] not in SCALARS or (value is None and optional):
        return value  # text, paths, lists: their own checks
    kind = kinds[0]
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is float and number and math.isfinite(value):
        return float(value)
    unset = " or leave it unset" if optional else ""
    raise ConfigError(f"{name} must be {SCALARS[kind]}{unset}, got {value!r}.")


def component(config: Any, cls: type) -> Any:
    """The ``cls`` component of a config that holds all of its fields (a flat composed config)."""
    return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})
