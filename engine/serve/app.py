"""The console: a small Starlette app of server-rendered pages (Jinja, sandboxed, autoescaped),
each also served as JSON (`/index.json`, `/i/NAME.json`, `/i/NAME/orders/KEY.json`), plus
`/metrics`, `/healthz` and `/readyz`.

Every page needs a logged-in user (a session cookie, or `Authorization: Bearer <token>`) except
`/login`, `/healthz`, `/readyz` and the stylesheet. Actions are two steps: a GET shows what will
happen and asks to confirm, a POST (operator role, CSRF token, `confirm=yes`) does it. Whatever
a page or answer holds has every secret this process resolved masked (`engine.http.everywhere`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import orjson
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from engine import control, runner
from engine.http import everywhere
from engine.serve import actions, views
from engine.serve.access import Session, Sessions, User, Users, same

log = logging.getLogger("syncengine.serve")
TEMPLATES = Path(__file__).parent / "templates"
COOKIE, LOGIN_COOKIE = "syncengine_session", "syncengine_login"
MAX_FORM = 64 * 1024
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'"}


@dataclass
class Console:
    """What the app serves: the project, its state directory, who may log in, and what ran."""

    project: runner.Project
    state_dir: str | Path                     # a state directory or a postgresql:// URL
    users: Users
    book: views.RunBook = field(default_factory=views.RunBook)
    sessions: Sessions = field(default_factory=Sessions)
    secure_cookies: bool = False
    metrics: Any = None                         # engine.serve.metrics.Metrics
    ready: bool = True                           # false until the schedule has started
    on_outcome: Any = None                       # called with each console-run outcome (metrics, alerts)
    ledgers: dict[str, Any] = field(default_factory=dict)

    def report(self, outcome: runner.Outcome, started: float | None = None) -> None:
        self.book.record(outcome, started)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def ledger(self, name: str) -> contextlib.AbstractContextManager:
        """The open ledger of `name`, kept for the process (opening one costs ~100 ms on a busy
        machine, reading it a fraction of a ms); `close()` closes them all."""
        if name not in self.ledgers:
            self.ledgers[name] = control.open_ledger(self.state_dir, name)
        return contextlib.nullcontext(self.ledgers[name])

    def close(self) -> None:
        for ledger in self.ledgers.values():
            ledger.close()
        self.ledgers.clear()

    def names(self) -> list[str]:
        return sorted(set(self.project.integrations) | set(control.ledger_names(self.state_dir)))


_env = ImmutableSandboxedEnvironment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=StrictUndefined)
_env.filters["q"] = lambda value: quote(str(value), safe="")
_env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def create_app(console: Console) -> Starlette:
    app = Starlette(routes=[
        Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview_page), Route("/index.json", overview_page),
        Route("/i/{name}.json", integration_page), Route("/i/{name}", integration_page),
        Route("/i/{name}/orders/{key}.json", order_page), Route("/i/{name}/orders/{key}", order_page),
        Route("/i/{name}/confirm/{action}", confirm_page),
        Route("/i/{name}/actions/{action}", act, methods=["POST"]),
        Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz),
        Route("/console.css", stylesheet),
    ], exception_handlers={Exception: _failed})
    app.state.console = console
    return app


async def _failed(request: Request, exc: Exception) -> Response:
    """A bug shows one line, never a traceback (it is logged, masked, for the operator)."""
    log.error("console: %s %s failed: %s", request.method, request.url.path,
              everywhere().mask(f"{type(exc).__name__}: {exc}"))
    return PlainTextResponse("internal error: the console could not answer this request (see its log)", 500, HEADERS)


# -- answers ---------------------------------------------------------------------------------

def page(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    """A page, or its JSON when the path ends in `.json`; secrets masked either way."""
    if request.url.path.endswith(".json"):
        body = orjson.dumps(values.get("data", values), default=str).decode()
        return Response(everywhere().mask(body), status, HEADERS, media_type="application/json")
    session = request.scope.get("session")
    flash = session.flash.pop() if session is not None and getattr(session, "flash", None) else None
    html = _env.get_template(template).render(
        user=request.scope.get("user"), csrf=session.csrf if session else "", flash=flash, **values)
    return HTMLResponse(everywhere().mask(html), status, HEADERS)


def _console(request: Request) -> Console:
    return request.app.state.console


async def form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (first value of each field; at most MAX_FORM bytes)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    return {key: values[0] for key, values in parse_qs(body.decode(errors="replace")).items()}


def _authenticate(request: Request) -> tuple[User | None, Session | None]:
    console = _console(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return console.users.bearer(header[7:].strip()), None
    session = console.sessions.get(request.cookies.get(COOKIE))
    return (session.user, session) if session else (None, None)


def _guard(request: Request) -> Response | None:
    """None when a user is logged in (stored in the scope), else where to go: the login page for
    a browser, 401 for a script."""
    user, session = _authenticate(request)
    if user is None:
        path = request.url.path
        if path.endswith(".json") or path == "/metrics" or request.headers.get("authorization") or request.method == "POST":
            return PlainTextResponse("login required", 401, {**HEADERS, "WWW-Authenticate": "Bearer"})
        return RedirectResponse("/login?" + urlencode({"next": _local(request.url.path)}), 303, HEADERS)
    request.scope["user"], request.scope["session"] = user, session
    return None


def _local(path: str) -> str:
    """Only a path on this console may be a redirect target (no //host, no scheme)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    secure = _console(request).secure_cookies or request.url.scheme == "https"
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict", secure=secure)


# -- login -----------------------------------------------------------------------------------

async def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", status, error=error, login_csrf=token,
                    next=_local(request.query_params.get("next", "/")))
    _cookie(response, request, LOGIN_COOKIE, token, 600)
    return response


async def login(request: Request) -> Response:
    fields = await form(request)
    if not same(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return await login_page(request, "The form expired; please log in again.", 400)
    console = _console(request)
    user = await asyncio.to_thread(console.users.login, fields.get("user", ""), fields.get("password", ""))
    if user is None:
        return await login_page(request, "Unknown user or wrong password.", 401)
    sid, _ = console.sessions.start(user)
    response = RedirectResponse(_local(fields.get("next", "/")), 303, HEADERS)
    _cookie(response, request, COOKIE, sid, int(console.sessions.seconds))
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


async def logout(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    session = request.scope["session"]
    if session is None or not same((await form(request)).get("csrf"), session.csrf):
        return PlainTextResponse("CSRF token missing or wrong", 403, HEADERS)
    _console(request).sessions.end(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", 303, HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- pages -----------------------------------------------------------------------------------

def _ledgers(console: Console):
    for name in console.names():
        if name in control.ledger_names(console.state_dir):
            with console.ledger(name) as ledger:
                yield name, ledger
        else:
            yield name, None


async def overview_page(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    console = _console(request)
    rows = views.overview(console.project.integrations, _ledgers(console), console.book)
    return page(request, "overview.html", rows=rows, data={"integrations": rows})


def _known(request: Request) -> str | None:
    name = request.path_params["name"]
    return name if name in _console(request).names() else None


async def integration_page(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    console, name = _console(request), _known(request)
    if name is None or name not in control.ledger_names(console.state_dir):
        return page(request, "missing.html", 404, what=f"integration {request.path_params['name']}",
                    data={"error": "no such integration (or nothing ran yet)"})
    params = request.query_params
    with console.ledger(name) as ledger:
        status = params.get("status") or views.default_status(ledger.counts())
        if status not in views.STATUSES:
            status = "delivered"
        listing = views.orders(ledger, status=status, q=params.get("q", ""), reason=params.get("reason", ""),
                               page=_int(params.get("page"), 1))
        recent = control.actions(ledger, 10)
        paused = control.paused(ledger)
    integration = console.project.integrations.get(name)
    flows = [f for f in (integration.flows if integration else ()) if f in runner.FLOWS]
    return page(request, "integration.html", name=name, listing=listing, recent=recent, paused=paused,
                flows=flows, data=listing)


async def order_page(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    console, name, key = _console(request), _known(request), request.path_params["key"]
    found = None
    if name is not None and name in control.ledger_names(console.state_dir):
        with console.ledger(name) as ledger:
            found = views.order(ledger, key, _mapper(console, name))
    if found is None:
        return page(request, "missing.html", 404, what=f"order {key}", data={"error": "no such order"})
    return page(request, "order.html", name=name, order=found, data=found)


def _mapper(console: Console, name: str):
    integration = console.project.integrations.get(name)
    if integration is None:
        return None
    connector = console.project.connectors.get(integration.source.connector)
    operation = connector.operations.get("list_orders") if connector else None
    return operation.map if operation is not None else None


def _int(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else default


# -- actions ---------------------------------------------------------------------------------

def _values(source: Any) -> dict[str, str]:
    return {name: str(source.get(name, ""))[:200] for name in ("key", "flow", "since") if source.get(name)}


async def confirm_page(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    name, action = _known(request), request.path_params["action"]
    if name is None or action not in actions.ACTIONS:
        return page(request, "missing.html", 404, what=f"action {action}", data={})
    if not request.scope["user"].may_act:
        return page(request, "missing.html", 403, what="this action: your role is read-only", data={})
    values = _values(request.query_params)
    if lacking := actions.missing(action, values):
        return page(request, "confirm.html", 400, name=name, action=action, values=values,
                    question=f"{action} needs {', '.join(lacking)}", lacking=lacking)
    return page(request, "confirm.html", name=name, action=action, values=values, lacking=[],
                question=actions.question(action, name, values))


async def act(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    user, session = request.scope["user"], request.scope["session"]
    fields = await form(request)
    if session is not None and not same(fields.get("csrf"), session.csrf):
        return PlainTextResponse("CSRF token missing or wrong", 403, HEADERS)
    if not user.may_act:
        return PlainTextResponse("your role is read-only", 403, HEADERS)
    name, action = _known(request), request.path_params["action"]
    if name is None or action not in actions.ACTIONS:
        return PlainTextResponse("no such integration or action", 404, HEADERS)
    values = _values(fields)
    if fields.get("confirm") != "yes" or actions.missing(action, values):
        return PlainTextResponse("not confirmed (confirm=yes) or a field is missing", 400, HEADERS)
    console = _console(request)
    result = await actions.perform(console.project, console.state_dir, name, action, values, user.name,
                                   console.report)
    if session is None:                                   # a script with a token
        body = orjson.dumps({"ok": result.ok, "message": result.message}).decode()
        return Response(everywhere().mask(body), 200 if result.ok else 409, HEADERS, media_type="application/json")
    session.flash = [("ok" if result.ok else "error", f"{action}: {result.message}")]
    back = f"/i/{quote(name)}" + (f"/orders/{quote(values['key'], safe='')}" if values.get("key") else "")
    return RedirectResponse(back, 303, HEADERS)


# -- endpoints -------------------------------------------------------------------------------

async def metrics(request: Request) -> Response:
    if (denied := _guard(request)) is not None:
        return denied
    console = _console(request)
    if console.metrics is None:
        return PlainTextResponse("metrics are off", 404, HEADERS)
    body, media_type = await asyncio.to_thread(console.metrics.exposition)
    return Response(everywhere().mask(body.decode()), 200, {"Cache-Control": "no-store"}, media_type=media_type)


async def healthz(request: Request) -> Response:
    """The process answers (liveness)."""
    return PlainTextResponse("ok\n", 200, HEADERS)


async def readyz(request: Request) -> Response:
    """Ready when the schedule has started and every ledger opens (readiness)."""
    console = _console(request)
    problems = [] if console.ready else ["the schedule has not started yet"]
    for name in control.ledger_names(console.state_dir):
        try:
            with console.ledger(name) as ledger:
                ledger.counts()
        except Exception as exc:  # noqa: BLE001 - any failure to read a ledger is "not ready"
            problems.append(f"{name}: ledger unreadable: {type(exc).__name__}")
    if problems:
        return PlainTextResponse("not ready\n" + "\n".join(problems) + "\n", 503, HEADERS)
    return PlainTextResponse("ready\n", 200, HEADERS)


async def stylesheet(request: Request) -> Response:
    return Response((TEMPLATES / "console.css").read_text(encoding="utf-8"), 200,
                    {"Cache-Control": "max-age=3600"}, media_type="text/css")

