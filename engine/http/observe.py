"""Who wants to know about each HTTP exchange and each wait (the console's `/metrics`).

    remove = watch(answered=lambda host, status, seconds: ..., waited=lambda reason, seconds: ...)

`status` is None when no answer came (a transport error or timeout). Observers are called in
the event loop, so they must be quick and must not raise; nothing is watched by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("syncengine.http")

Answered = Callable[[str, "int | None", float], None]
Waited = Callable[[str, float], None]
_answered: list[Answered] = []
_waited: list[Waited] = []


def watch(*, answered: Answered | None = None, waited: Waited | None = None) -> Callable[[], None]:
    """Call `answered(host, status, seconds)` after every exchange and `waited(reason, seconds)`
    for every wait; returns the function that stops it."""
    if answered:
        _answered.append(answered)
    if waited:
        _waited.append(waited)

    def remove() -> None:
        if answered in _answered:
            _answered.remove(answered)
        if waited in _waited:
            _waited.remove(waited)
    return remove


def answered(host: str, status: int | None, seconds: float) -> None:
    for observer in _answered:
        try:
            observer(host, status, seconds)
        except Exception:  # noqa: BLE001 - a broken observer never breaks a request
            log.exception("an HTTP observer failed")


def waited(reason: str, seconds: float) -> None:
    for observer in _waited:
        try:
            observer(reason, seconds)
        except Exception:  # noqa: BLE001
            log.exception("an HTTP observer failed")
