"""Settings from files, ``key=value`` overrides and command-line options, checked one way.

Every settings object in imagepref is a pydantic model that forbids unknown keys and declares its
bounds on its fields. This module is the one place that turns user input into such a model:

- ``apply_overrides`` parses ``a.b=value`` (the value read as YAML: ``steps=50``,
  ``methods=[dpo]``, ``lr=1e-3``) into a nested dict, refusing a key the model does not have with
  the nearest valid one;
- ``validated`` validates a dict into the model, and any problem becomes one line that names the
  key (and, for an unknown key, the nearest valid one);
- ``option_bounds`` makes a typer option callback that checks a command-line value against the
  bounds of the model field it sets, so a command and a recipe accept the same values.

It imports pydantic and PyYAML only, so the recipes, the reward and align commands can check
their settings before anything heavy is imported.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from imagepref.errors import BadInputError

# A seed every generator takes: torch, numpy (which stops at 2**32 - 1) and Python's random.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _settings_type(annotation: Any) -> type[BaseModel] | None:
    """The settings model ``annotation`` holds, also inside ``X | None`` (None for any other type)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [t for t in typing.get_args(annotation) if t is not type(None)]
        annotation = found[0] if len(found) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _fields(model: type[BaseModel]) -> dict[str, tuple[Any, str]]:
    """``{name: (annotation, help text)}`` of a settings model."""
    if not model.__pydantic_complete__:
        model.model_rebuild()  # a model whose field types are imported on first use
    return {name: (field.annotation, field.description or "") for name, field in model.model_fields.items()}


def setting_paths(model: type, prefix: str = "") -> dict[str, str]:
    """Every valid dotted key of ``model`` with its help text (nested settings expanded)."""
    paths: dict[str, str] = {}
    for name, (annotation, help_text) in _fields(model).items():
        nested = _settings_type(annotation)
        if nested is not None:
            paths.update(setting_paths(nested, f"{prefix}{name}."))
        else:
            paths[f"{prefix}{name}"] = help_text
    return paths


def nearest_key(key: str, paths: list[str]) -> str | None:
    """The key of ``paths`` closest to a misspelled ``key`` (None when nothing is close)."""
    found = difflib.get_close_matches(key, paths, n=1, cutoff=0.6)
    if found:
        return found[0]
    # A key under the right section but misspelled in its last part: compare last parts only.
    section, _, tail = key.rpartition(".")
    tails = {p.rsplit(".", 1)[-1]: p for p in paths if p.rpartition(".")[0] == section}
    close = difflib.get_close_matches(tail, list(tails), n=1, cutoff=0.6)
    return tails[close[0]] if close else None


def unknown_key_error(key: str, model: type, where: str, prefix: str = "", listing: str = "") -> BadInputError:
    """The one-line error for ``key`` (dotted, within ``model``): the nearest valid key, else where
    to find them all (``listing``, default: the model's own keys)."""
    paths = list(setting_paths(model))
    suggestion = nearest_key(key, paths)
    if suggestion:
        hint = f"did you mean {prefix}{suggestion}?"
    else:
        hint = listing or ("known keys: " + ", ".join(prefix + p for p in paths))
    return BadInputError(f"{where}: unknown key {prefix}{key}; {hint}")


def _is_free_form(model: type, parts: list[str]) -> bool:
    # A key below a dict-valued field (reward weights, loss weights) may be any name.
    for index, part in enumerate(parts):
        fields = _fields(model)
        if part not in fields:
            return False
        annotation = fields[part][0]
        nested = _settings_type(annotation)
        if nested is not None:
            model = nested
            continue
        if index == len(parts) - 1:
            return True
        return typing.get_origin(annotation) is dict or annotation is dict
    return True  # the key names a whole section; validation checks what it holds


def parse_override(item: str, example: str = "steps=50") -> tuple[str, Any]:
    """``a.b=value`` as (``a.b``, value read as YAML; text when it is not YAML; None when empty)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInputError(f"override {item!r} is not key.path=value (for example {example})")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def apply_overrides(
    data: dict[str, Any],
    overrides: list[str],
    model: type,
    where: str = "override",
    prefix: str = "",
    example: str = "steps=50",
    listing: str = "",
) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to the raw settings dict ``data`` of ``model`` (in place;
    returned). A key ``model`` does not have is one error naming the nearest valid key; ``prefix``
    is how the user's keys are written before the model's own (``reward.settings.``)."""
    for item in overrides:
        key, value = parse_override(item, example)
        parts = key.split(".")
        if key not in setting_paths(model) and not _is_free_form(model, parts):
            raise unknown_key_error(key, model, where, prefix, listing)
        target = data
        for part in parts[:-1]:
            existing = target.get(part)
            target = target.setdefault(part, {}) if existing is None else existing
            if not isinstance(target, dict):
                raise BadInputError(f"{where} {prefix}{key}: {part} is not a section")
        target[parts[-1]] = value
    return data


def error_line(error: ValidationError, model: type, where: str, prefix: str = "", listing: str = "") -> BadInputError:
    """The first problem of a pydantic ``ValidationError`` of ``model`` as one line naming the key;
    an unknown key names the nearest valid one."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return unknown_key_error(key, model, where, prefix, listing)
    message = first["msg"].removeprefix("Value error, ")
    name = (prefix + key).rstrip(".")
    return BadInputError(f"{where}: {name}: {message}" if name else f"{where}: {message}")


def validated(model: type[BaseModel], data: dict[str, Any], where: str, prefix: str = "", listing: str = ""):
    """``model`` validated from ``data``; the first problem is one line (see ``error_line``)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise error_line(error, model, where, prefix, listing) from None


_BOUND_WORDS = {
    "greater_than": ("must be greater than", "gt"),
    "greater_than_equal": ("must be at least", "ge"),
    "less_than": ("must be less than", "lt"),
    "less_than_equal": ("must be at most", "le"),
}


def option_bounds(model: Any, field: str | None = None) -> Callable[[Any, Any, Any], Any]:
    """A typer option callback that checks the option's value as ``model.field`` (its bounds and the
    model's checks across fields, the others at their defaults): a value out of range is one line
    naming the option before the command starts. ``model`` may be a function returning the class,
    so a heavy package is imported only when the command runs; without ``field`` it is a type with
    its own bounds (``Annotated[int, Field(ge=1)]``) for an option no settings model has. ``None``
    (the option not given) passes."""

    def check(context, parameter, value):
        if value is None or context.resilient_parsing:
            return value
        try:
            if field is None:
                TypeAdapter(model).validate_python(value)
            else:
                (model if isinstance(model, type) else model()).model_validate({field: value})
        except ValidationError as error:
            first = error.errors()[0]
            option = parameter.opts[0] if parameter.opts else parameter.name
            words = _BOUND_WORDS.get(first["type"])
            if words:
                raise BadInputError(f"{option} {words[0]} {first['ctx'][words[1]]}; got {value}") from None
            raise BadInputError(f"{option}: {first['msg'].removeprefix('Value error, ')}; got {value}") from None
        return value

    return check


def _bounds(field: Any) -> str:
    """A field's numeric bounds as text (``> 0``, ``0 <= x <= 1``), from its pydantic constraints."""
    parts = []
    for item in field.metadata:
        for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def settings_listing(model: type[BaseModel], first: typing.Iterable[str] = ()) -> str:
    """Every field of ``model``, one a line: ``name = default (bounds): first sentence of its help``;
    the fields named in ``first`` come first. Fields excluded from the record (secrets) are left out."""
    first = set(first)
    lines = []
    for name, field in model.model_fields.items():
        if field.exclude and name not in first:
            continue
        default = field.get_default(call_default_factory=True)
        bounds = _bounds(field)
        text = (field.description or "").split(". ")[0].strip().rstrip(".")
        line = f"{name} = {default!r}" + (f" ({bounds})" if bounds else "") + (f": {text}" if text else "")
        lines.append((name not in first, line))
    return "\n".join(line for _, line in sorted(lines, key=lambda item: item[0]))
