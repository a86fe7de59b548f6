"""Secret references in integration config, and the redaction of their values.

A config value may be `${env:NAME}` (an environment variable) or `${file:PATH}` (a file's
content without its trailing newline; PATH relative to the integration file). A value can also
embed references in longer text ("Bearer ${env:TOKEN}"). Every resolved value is remembered by
`engine.http.Redactor`, which masks it in messages, logs and dry-run output. Only the values of
config properties the connector marks `secret: true` are secrets; a `${env:..}` URL is not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

REFERENCE = re.compile(r"\$\{(?P<kind>env|file):(?P<name>[^}]+)\}")


def resolve(config: Mapping[str, Any], base: Path, secret_fields: Iterable[str] = (),
            environ: Mapping[str, str] | None = None) -> tuple[dict, set[str]]:
    """Resolve every reference in a config; return it and the values of its `secret_fields`."""
    environ = os.environ if environ is None else environ

    def one(match: re.Match) -> str:
        return _lookup(match["kind"], match["name"].strip(), base, environ)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return REFERENCE.sub(one, value)
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    resolved = walk(config)
    return resolved, {str(resolved[name]) for name in secret_fields if resolved.get(name) not in (None, "")}


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
