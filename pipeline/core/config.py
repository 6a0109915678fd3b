"""Typed, per-stage configuration: defaults reproduce OpenWebText; a TOML file and `--set key=value` override.

A config file holds one table per stage (`[harvest]`, `[fetch]`, ...; see pipeline/configs/demo.toml).
Unknown keys and wrong types fail with one line that names the stage, the key and the value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.core.errors import ConfigError


class Resources(BaseModel):
    """What one task of a stage asks the cluster for; Ray schedules the task on a node that has it free."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float = Field(1.0, gt=0)
    memory_gb: float | None = Field(None, gt=0)  # None: no reservation (Ray's default)
    gpus: float = Field(0.0, ge=0)  # a share of one GPU (0.25), or whole GPUs (2)

    @field_validator("gpus")
    @classmethod
    def _whole_or_share(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("more than one GPU must be a whole number (Ray schedules shares of one GPU only)")
        return v


class TypedConfig(BaseModel):
    """A config: unknown keys refused, assignments validated, a fingerprint over what changes the output."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Keys that change how a stage runs but not what it writes (worker counts, a proxy's port);
    # they are saved with the output but left out of the fingerprint that decides reuse.
    transport_keys: ClassVar[frozenset[str]] = frozenset()

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        skip = self.transport_keys | {"resources"}
        identity = {k: v for k, v in self.resolved().items() if k not in skip}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class StageConfig(TypedConfig):
    """A stage's config: where it reads and writes, and what each of its tasks asks for."""

    input: str | list[str]  # a dataset directory (harvest: dump files); chain.py fills it from the root
    output: str  # the dataset directory it writes
    resources: Resources = Resources()  # per task ([<stage>.resources] cpus = 2, memory_gb = 8, gpus = 1)

    def task_resources(self) -> Resources:
        """What each task asks for; a stage whose tasks use several threads says so here (tokenize)."""
        return self.resources


C = TypeVar("C", bound=BaseModel)


def parse_value(raw: str) -> Any:
    """`--set` values are TOML literals (3, 0.5, true, ["en", "de"]); anything else is a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        nxt = target.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a table")
        target = nxt
    target[keys[-1]] = value


def read_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None


def read_file_section(path: str | Path, section: str) -> dict[str, Any]:
    value = read_file(path).get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    return dict(value)


def check_tables(path: str | Path, known: Sequence[str]) -> None:
    """Refuse a table no one reads (`[extrat]`), naming the closest known one: its settings would be lost without a
    word. Keys outside any table are refused too."""
    for name, value in read_file(path).items():
        if name in known:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: key {name!r} outside any table (tables: {', '.join(known)})")
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean [{close[0]}]? " if close else ""
        raise ConfigError(f"{path}: unknown table [{name}] ({hint}tables: {', '.join(known)})")


def load_config(
    cls: type[C],
    section: str,
    file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> C:
    values: dict[str, Any] = dict(base or {})
    if file is not None:
        values.update(read_file_section(file, section))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        _set_dotted(values, key.strip(), parse_value(raw.strip()))
    return validate(cls, section, values)


def validate(cls: type[C], section: str, values: dict[str, Any]) -> C:
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        raise ConfigError(_one_line(section, cls, e)) from None


def _one_line(section: str, cls: type[BaseModel], e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(cls.model_fields))
            parts.append(f"unknown key '{loc}' (known keys: {known})")
        elif err["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        else:
            parts.append(f"'{loc}': {err['msg']} (got {err.get('input')!r})")
    return f"[{section}] config: " + "; ".join(parts)
