"""Start-up work kept across processes: what lint found in a connector spec and the code Jinja
compiled for a template, on disk, by a digest of everything the result depends on.

Thousands of short runs sharing a worker would each lint and compile the same unchanged specs
again (~1 s for the bundled connectors). An entry's name is a digest of its key and of
`ENGINE`: this engine's version, its source files (name, size, modification time) and schemas,
and the Python version (code objects are `marshal` data, which is only valid in the Python
that wrote it). Anything else the result depends on (a spec's data, the example files it
names) is in the caller's key. An entry is written to a temporary file and renamed into place,
so a reader sees a whole entry or none; an entry that does not read back (truncated, garbage,
another format) is ignored and written again. Entries live under `<kind>/<engine>/`; the first
entry an engine writes removes those of other engines idle for a day (`_prune`).

Where: `$SYNCENGINE_CACHE_DIR`, else `$XDG_CACHE_HOME/syncengine`, else `~/.cache/syncengine`;
`SYNCENGINE_CACHE_DIR=off` turns it off. A directory that cannot be written turns it off
silently: the cache only ever saves time. Code objects are run as they are read, so the
directory must belong to this user and be writable by no one else (it is created `0700`);
otherwise it is not used.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from engine import ROOT, SCHEMAS, __version__


def _engine_digest() -> str:
    """This engine: version, every source file and schema (name, size, mtime), Python's version."""
    digest = hashlib.blake2b(f"{__version__}\0{sys.version}\0{sys.implementation.cache_tag}".encode(),
                             digest_size=16)
    for folder, pattern in ((ROOT / "engine", "**/*.py"), (SCHEMAS, "*.json")):
        for path in sorted(folder.glob(pattern)):
            stat = path.stat()
            digest.update(f"{path.relative_to(ROOT)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


#: What every entry also depends on (tests replace it to stand for another engine version).
ENGINE = _engine_digest()
#: Entries of another engine are removed once none has been written for this long (seconds).
PRUNE_AFTER = 24 * 3600


def folder() -> Path | None:
    """The cache directory, or None when the cache is off."""
    chosen = os.environ.get("SYNCENGINE_CACHE_DIR")
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "syncengine"


def _private(where: Path) -> bool:
    """Whether `where` is this user's alone (created so when absent): a stored code object is
    run as it is, so a directory others can write to is never used."""
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        stat = where.stat()
    except OSError:
        return False
    return stat.st_uid == os.getuid() and not stat.st_mode & 0o022


def _path(kind: str, key: str) -> Path | None:
    where = folder()
    if where is None or not _private(where):
        return None
    name = hashlib.blake2b(f"{ENGINE}\0{kind}\0{key}".encode(), digest_size=20).hexdigest()
    return where / kind / ENGINE[:16] / name[:2] / name


def _read(kind: str, key: str) -> bytes | None:
    path = _path(kind, key)
    try:
        return None if path is None else path.read_bytes()
    except OSError:
        return None


def _write(kind: str, key: str, data: bytes) -> None:
    path = _path(kind, key)
    if path is None:
        return
    if not path.parent.parent.exists():        # the first entry of this engine: forget older ones
        _prune(path.parent.parent.parent)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".new-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:
        return


def _prune(kind: Path) -> None:
    """Remove the entries of other engines (other versions, edited sources) not written for a
    day: this engine can never read them. A day's grace keeps two versions running side by
    side (a rolling upgrade) from deleting each other's entries over and over."""
    stale = time.time() - PRUNE_AFTER
    try:
        others = [folder for folder in kind.iterdir() if folder.name != ENGINE[:16]]
    except OSError:
        return
    for other in others:
        try:
            if other.stat().st_mtime < stale:
                shutil.rmtree(other, ignore_errors=True)
        except OSError:
            continue


def get_json(kind: str, key: str) -> Any:
    """The JSON value stored under (kind, key), or None (absent or unreadable)."""
    data = _read(kind, key)
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def put_json(kind: str, key: str, value: Any) -> None:
    _write(kind, key, orjson.dumps(value))


def get_code(kind: str, key: str) -> Any:
    """The code object stored under (kind, key), or None (absent or unreadable)."""
    data = _read(kind, key)
    if data is None:
        return None
    try:
        code = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return code if type(code) is type(_read.__code__) else None


def put_code(kind: str, key: str, code: Any) -> None:
    _write(kind, key, marshal.dumps(code))
