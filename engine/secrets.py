"""Secret references in integration config, and the redaction of their values.

A config value may be `${env:NAME}` (an environment variable) or `${file:PATH}` (a file's
content without its trailing newline; PATH relative to the integration file). A value can also
embed references in longer text ("Bearer ${env:TOKEN}"). Every resolved value is remembered by
the `Redactor`, which masks it in messages, logs and dry-run output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

REFERENCE = re.compile(r"\$\{(?P<kind>env|file):(?P<name>[^}]+)\}")
MASK = "***"


def is_reference(value: Any) -> bool:
    """True when the whole value is one `${env:..}` or `${file:..}` reference."""
    return isinstance(value, str) and REFERENCE.fullmatch(value.strip()) is not None


def resolve(config: Mapping[str, Any], base: Path, environ: Mapping[str, str] | None = None) -> tuple[dict, set[str]]:
    """Resolve every reference in a config; return the config and the set of secret values."""
    environ = os.environ if environ is None else environ
    secrets: set[str] = set()

    def one(match: re.Match) -> str:
        value = _lookup(match["kind"], match["name"].strip(), base, environ)
        secrets.add(value)
        return value

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return REFERENCE.sub(one, value)
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(config), {secret for secret in secrets if secret}


def _lookup(kind: str, name: str, base: Path, environ: Mapping[str, str]) -> str:
    if kind == "env":
        if name not in environ:
            raise ConfigError(f"environment variable {name} is not set (referenced as ${{env:{name}}})")
        return environ[name]
    path = (base / name).expanduser()
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None


class Redactor:
    """Masks known secret values in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Remember more secret values (values shorter than 4 characters are not masked)."""
        self._secrets.update(secret for secret in secrets if secret and len(secret) >= 4)
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __call__(self, text: str) -> str:
        """The text with every known secret replaced by ***."""
        return self._pattern.sub(MASK, text) if self._pattern else text
