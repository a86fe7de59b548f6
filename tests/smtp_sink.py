"""A local SMTP sink for the alert tests: accepts every message on 127.0.0.1 and keeps it.

    with SmtpSink() as sink:
        ... send to ("127.0.0.1", sink.port) ...
        sink.messages        # [email.message.EmailMessage, ...]

Speaks just enough SMTP (EHLO/HELO, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for `smtplib`.
"""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from typing import Any


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self._say("220 sink ready")
        while line := self.rfile.readline():
            verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._say("250-sink", "250-AUTH PLAIN LOGIN", "250 8BITMIME")
            elif verb == "AUTH":
                self.server.logins.append(line.decode(errors="replace").strip())
                self._say("235 welcome")
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                self._say("250 ok")
            elif verb == "DATA":
                self._say("354 go on")
                self.server.messages.append(email.message_from_bytes(self._data(), policy=email.policy.default))
                self._say("250 kept")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not here")

    def _data(self) -> bytes:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)

    def _say(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode())


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.messages: list[Any] = []
        self.logins: list[str] = []
        self.port = self.server_address[1]

    def __enter__(self) -> SmtpSink:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
