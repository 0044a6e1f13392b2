"""Parse a search-space YAML into the typed config; one clear line per error.

Errors name the file, the field (dotted path) and what was expected, so a user can fix a typo
before any model, data or cluster is touched.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from econ_ray.config.schema import SearchSpaceFile


class ConfigError(ValueError):
    """A config that cannot run. ``str(err)`` is one line: file, field, expectation."""

    def __init__(self, path: str | Path, field: str, message: str) -> None:
        self.path, self.field, self.message = str(path), field, message
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + message)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for did-you-mean suggestions)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        # unwrap Optional[X] / X | None
        args = [a for a in getattr(ann, "__args__", ()) if a is not type(None)]
        current = args[0] if args and not (isinstance(ann, type) and issubclass(ann, BaseModel)) else ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: ErrorDetails, root: type[BaseModel]) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        known = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return field, f"unknown key{hint}; expected one of: {', '.join(known)}"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    if err["type"] not in ("missing",) and not isinstance(got, (dict, list)):
        msg += f" (got {got!r})"
    return field, msg


def parse_config(data: Any, path: str | Path = "<config>") -> SearchSpaceFile:
    """Validate a mapping; raise :class:`ConfigError` naming the first bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        return SearchSpaceFile.model_validate(data)
    except ValidationError as exc:
        field, msg = _describe(exc.errors()[0], SearchSpaceFile)
        raise ConfigError(path, field, msg) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(p, "", "file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            p, "", f"not a text file (not UTF-8: byte {exc.start} is 0x{exc.object[exc.start]:02x})"
        ) from None
    except OSError as exc:
        raise ConfigError(p, "", f"cannot be read: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise ConfigError(p, "", "not a text file (it holds NUL bytes)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(p, "", f"not valid YAML: {where}{problem}") from None
    return data if data is not None else {}


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "training.lr", 1e-4)`` creates intermediate mappings as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``'training.lr=1e-4'`` -> ``('training.lr', 0.0001)`` (the value is read as YAML)."""
    if "=" not in item:
        raise ValueError(f"--set expects dotted.key=value, got {item!r}")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchSpaceFile:
    """Read ``path``, apply dotted ``overrides`` (CLI flags), validate."""
    data = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return parse_config(data, path)
