"""Who may use the console: the users file, password and token checks, sessions and CSRF.

The users file has one user a line, `name:role:credential`, written by `syncengine user add`:

    # syncengine console users
    alice:operator:scrypt$16384$8$1$<salt>$<hash>
    viewer:read-only:scrypt$16384$8$1$<salt>$<hash>
    ci-bot:read-only:token$<sha256 of the token>

A password is kept as a salted scrypt hash (stdlib `hashlib.scrypt`, 16 random bytes of salt),
an API token as its SHA-256 (it is random, 32 bytes: nothing to brute-force). Roles: `operator`
may look and act, `read-only` may only look.

A login makes a server-side session: a random id in an HttpOnly, SameSite=Strict cookie (Secure
over https or with `--secure-cookies`), expiring after `SESSION_SECONDS`. Each session has its
own CSRF token; every POST must carry it (the login form carries one of its own, tied to a
pre-login cookie). A request with `Authorization: Bearer <token>` needs no cookie and no CSRF
token: nothing ambient can forge it.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from engine.errors import ConfigError

ROLES = ("operator", "read-only")
SESSION_SECONDS = 8 * 3600
SCRYPT = (16384, 8, 1)                 # n, r, p: about 50 ms and 16 MiB per check
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    credential: str

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


def hash_password(password: str, *, salt: bytes | None = None, cost: tuple[int, int, int] = SCRYPT) -> str:
    """`scrypt$n$r$p$salt$hash` (base64) of `password` with a fresh random salt."""
    salt = salt or secrets.token_bytes(16)
    n, r, p = cost
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)])


def check_password(password: str, credential: str) -> bool:
    """Whether `password` matches a stored `scrypt$...` credential (constant-time compare)."""
    parts = credential.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
        digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def token_credential(token: str) -> str:
    return "token$" + hashlib.sha256(token.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Users:
    """The users file, read once (the console restarts to see a change)."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self._tokens = {user.credential: user for user in users.values() if user.credential.startswith("token$")}
        self._dummy = hash_password("x", salt=b"\0" * 16)

    @classmethod
    def load(cls, path: str | Path) -> Users:
        """Parse the users file; ConfigError with the file and line for anything wrong."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the users file {path}: {exc.strerror or exc}") from None
        users = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user = _parse(line.strip(), f"{path}:{number}")
            users[user.name] = user
        if not users:
            raise ConfigError(f"the users file {path} has no user: add one with "
                              f"`syncengine user add NAME --users {path}`")
        return cls(users)

    def login(self, name: str, password: str) -> User | None:
        """The user whose password this is, or None (the same work either way)."""
        user = self.users.get(name)
        if user is None or not user.credential.startswith("scrypt$"):
            check_password(password, self._dummy)        # no timing hint that the name is unknown
            return None
        return user if check_password(password, user.credential) else None

    def bearer(self, token: str) -> User | None:
        """The user of an API token, or None."""
        return self._tokens.get(token_credential(token)) if token else None


def _parse(line: str, where: str) -> User:
    parts = line.split(":", 2)
    if len(parts) != 3:
        raise ConfigError(f"{where}: expected name:role:credential")
    name, role, credential = parts
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: user name {name!r} may hold letters, digits and . _ @ - only")
    if role not in ROLES:
        raise ConfigError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    if not (credential.startswith("scrypt$") or re.fullmatch(r"token\$[0-9a-f]{64}", credential)):
        raise ConfigError(f"{where}: the credential is neither a scrypt hash nor a token hash "
                          "(write it with `syncengine user add`)")
    return User(name, role, credential)


@dataclass
class Session:
    user: User
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)     # the next page's message


class Sessions:
    """Server-side sessions, in memory: a restart logs everyone out."""

    def __init__(self, seconds: float = SESSION_SECONDS) -> None:
        self.seconds = seconds
        self._sessions: dict[str, Session] = {}

    def start(self, user: User) -> tuple[str, Session]:
        self._sessions = {sid: s for sid, s in self._sessions.items() if s.expires > time.time()}
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), time.time() + self.seconds)
        self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        session = self._sessions.get(sid or "")
        if session is None or session.expires <= time.time():
            return None
        return session

    def end(self, sid: str | None) -> None:
        self._sessions.pop(sid or "", None)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def user_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`syncengine user add|remove NAME --users FILE`: write the users file (mode 0600)."""
    if not _NAME.fullmatch(args.name):
        raise ConfigError(f"user name {args.name!r} may hold letters, digits and . _ @ - only")
    path = Path(args.users)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else ["# syncengine console users"]
    kept = [line for line in lines if line.split(":", 1)[0] != args.name]
    if args.action == "remove":
        if len(kept) == len(lines):
            raise ConfigError(f"no user {args.name!r} in {path}")
        _write(path, kept)
        stdout.write(f"removed {args.name} from {path}\n")
        return 0
    if args.token:
        token = secrets.token_urlsafe(32)
        credential = token_credential(token)
    else:
        password = _password(args, stderr)
        credential = hash_password(password)
    _write(path, kept + [f"{args.name}:{args.role}:{credential}"])
    stdout.write(f"{args.name} ({args.role}) written to {path}\n")
    if args.token:
        stdout.write(f"token (shown once; send it as `Authorization: Bearer <token>`): {token}\n")
    return 0


def _password(args: argparse.Namespace, stderr: TextIO) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ", stream=stderr)
    if len(password) < 8:
        raise ConfigError("a console password needs at least 8 characters")
    return password


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
