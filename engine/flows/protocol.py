"""The write protocol of the shipments, inventory and cancellations flows: every write (a
tracking number, a stock level, a cancel, each step of a multi-step write) is journaled before
it goes out, and an outcome that is not known is resolved before anything is sent again.

A write's journal is one ledger kv record (namespace `writes`, key `<operation>|<subject key>`):

    {"subject": {...},            # what the write is about (order, package, inventory, ...)
     "key": "...",                # its idempotency key, rendered once and reused on every resend
     "done": {"<step>": {"id": ..., "<capture>": ...}},   # steps the other side took
     "inflight": "<step>",        # the step sent whose answer is not known (absent: none)
     "state": "open" | "done", "error": "...", "at": "..."}

`perform` walks the operation's steps in order:

1. a step already `done` is never sent again; its id and captures feed the later steps;
2. a step `inflight` (an earlier send's answer was lost: a timeout, a 5xx, a crash) is resolved
   first, by what the step declares: `verify` (a read whose `match` finds the step's effect),
   `skip_when` (its precondition re-read says it is done), or its own idempotency (resending is
   safe); it stays unknown when the resolving read fails, and nothing is sent;
3. before a send the step is marked `inflight` durably; a definite answer records `done` (or
   clears it after a refusal: certainly not done, safe to try later); an unknown one is resolved
   at once the same way and, when certainly not done, sent again, up to ROUNDS sends a run.

A journal whose subject changed supersedes it when the flow says so (a newer stock level for the
same SKU): what was in flight for the old one is resolved first, then the write starts over.
Otherwise (a package, a cancel) it is the same write and its done steps stay done. The caller
records its own result (confirmed, pushed, canceled) and the journal stays `done`, so a crash
between the two repeats nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import ExtractError, HTTPError, TemplateError
from engine.flows.base import FlowContext
from engine.flows.writes import Outcome, client_of, send_step, text
from engine.ledger import Ledger
from engine.specs.model import Operation, Step
from engine.specs.settings import iso

WRITES = "writes"
ROUNDS = 3                       # sends of one step per run when answers keep getting lost


@dataclass(frozen=True)
class Journal:
    """The ledger record of one write."""

    ledger: Ledger
    key: str

    def load(self) -> dict[str, Any]:
        return dict(self.ledger.kv_get(WRITES, self.key) or {})

    def save(self, state: Mapping[str, Any]) -> None:
        self.ledger.kv_set(WRITES, self.key, dict(state))


def journal(ctx: FlowContext, operation: Operation, subject_key: str) -> Journal | None:
    """The journal of one write (None in a dry run without a ledger)."""
    return None if ctx.ledger is None else Journal(ctx.ledger, f"{operation.name}|{subject_key}")


def unresolved(ledger: Ledger) -> list[tuple[str, dict]]:
    """Writes whose last send's outcome is still unknown: (journal key, journal)."""
    return [(key, state) for key, state in ledger.kv_items(WRITES)
            if isinstance(state, dict) and state.get("inflight")]


async def perform(ctx: FlowContext, side: str, operation: Operation, subject: Mapping[str, Any],
                  journal: Journal, *, supersede: bool = False) -> Outcome:
    """Carry out one write about `subject` (the template values it needs besides `config`)
    exactly once, whatever happened to earlier attempts. Never raises for the write.

    The journal key names the write. With `supersede` (a stock level: the newest value is what
    counts), a changed subject is a new write once the old one is resolved; without it (a
    tracking number, a cancel), it is the same write with fresher details, and what the journal
    says is done stays done."""
    state = journal.load()
    if state and state.get("subject") != _plain(subject) and supersede:
        if state.get("inflight"):
            earlier = await _Run(ctx, side, operation, state["subject"], journal, state).settle()
            if earlier is not None and earlier.status == "unknown":
                return Outcome("unknown", error=f"an earlier {operation.name} is still unresolved: {earlier.error}")
        state = {}
    if state.get("state") == "done":
        return Outcome("ok", id=state.get("id"), existed=True)
    run = _Run(ctx, side, operation, subject, journal, state or {"subject": _plain(subject), "done": {}})
    return await run.all_steps()


@dataclass
class _Run:
    """One pass over a write's steps."""

    ctx: FlowContext
    side: str
    operation: Operation
    subject: Mapping[str, Any]
    journal: Journal
    state: dict[str, Any]

    async def all_steps(self) -> Outcome:
        last_id = None
        for step in self.operation.steps:
            if step.name in self.state["done"]:
                last_id = self.state["done"][step.name].get("id") or last_id
                continue
            outcome = await self.step(step)
            if not outcome.ok:
                return outcome
            last_id = outcome.id or last_id
        self._save(state="done", id=last_id, error=None)
        return Outcome("ok", id=last_id)

    async def settle(self) -> Outcome | None:
        """Resolve the step in flight (an older subject's): done, certainly not, or unknown."""
        step = next((s for s in self.operation.steps if s.name == self.state["inflight"]), None)
        if step is None:
            return None
        found = await self.resolve(step, self.context())
        if found.ok:
            self._done(step, found)
        return found

    async def step(self, step: Step) -> Outcome:
        context = self.context()
        if self.state.get("inflight") == step.name:
            found = await self.resolve(step, context)
            if found.status == "unknown":
                self._save(error=found.error)
                return found
            if found.ok:
                return self._done(step, found)
        for _ in range(ROUNDS):
            outcome = await self.send(step, context)
            if outcome.status == "error":      # refused, certainly not done: a later try is a new
                self._save(inflight=None, error=outcome.error, key=None)   # write with a new key
                return outcome
            if outcome.ok:
                return self._done(step, outcome)
            found = await self.resolve(step, context)
            if found.status == "unknown":
                self._save(error=f"{outcome.error}; {found.error}")
                return Outcome("unknown", error=f"{outcome.error}; {found.error}")
            if found.ok:
                return self._done(step, found)
        self._save(inflight=None, error=outcome.error)
        return Outcome("error", error=f"{outcome.error} (not taken after {ROUNDS} sends; tried again next run)")

    def context(self) -> dict[str, Any]:
        steps = {name: dict(done) for name, done in self.state["done"].items()}
        return self.ctx.context(self.side, **self.subject, steps=steps,
                                idempotency_key=self.state.get("key"))

    async def send(self, step: Step, context: dict[str, Any]) -> Outcome:
        """Mark the step in flight (durably), then send it."""
        if step.idempotency_key is not None and not self.state.get("key"):
            try:
                # `uuid`: a fresh one per write (a key that must differ between two writes of the
                # same values); journaled below before the send, so every resend reuses it
                self.state["key"] = step.idempotency_key.render({**context, "uuid": str(uuid.uuid4())})
            except TemplateError as exc:
                return Outcome("error", error=f"{self.operation.name} idempotency_key: {exc.message}")
            context = {**context, "idempotency_key": self.state["key"]}
        self._save(inflight=step.name)
        return await send_step(self.ctx, self.side, self.operation.name, step, context)

    async def resolve(self, step: Step, context: dict[str, Any]) -> Outcome:
        """Did the step's lost send take effect? ok (done), error (certainly not), or unknown."""
        how = step.resolution
        if how == "verify":
            return await verify(self.ctx, self.side, step, context)
        if how in ("skip_when", "idempotent"):
            return Outcome("error", error="resend")     # the resend itself is safe (or re-checks)
        return Outcome("unknown", error=f"{self.operation.name}: the answer was lost and the step "
                                        "declares no way to check it (verify, skip_when, idempotent)")

    def _done(self, step: Step, outcome: Outcome) -> Outcome:
        self.state["done"][step.name] = {"id": outcome.id, **(outcome.captures or {})}
        self._save(inflight=None, error=None)
        return outcome

    def _save(self, **changes: Any) -> None:
        for name, value in changes.items():
            if value is None:
                self.state.pop(name, None)
            else:
                self.state[name] = value
        self.state["at"] = iso(self.ctx.now())
        self.journal.save(self.state)


async def verify(ctx: FlowContext, side: str, step: Step, context: Mapping[str, Any]) -> Outcome:
    """The step's reconcile read: ok with the matching record's id, error when no candidate
    matches (certainly not done), unknown when the read itself fails (any answer but a 2xx: a
    404 from a wrong path must not pass for "not there" and cause a resend)."""
    check = step.verify
    try:
        answer = await client_of(ctx, side).send(check.request.render(context))   # a 404 is no answer
        found = check.find(answer.body, context)
        ident = text(check.id(found)) if found is not None and check.id is not None else None
    except TemplateError as exc:
        return Outcome("unknown", error=f"verify request: {exc.message}")
    except (HTTPError, ExtractError) as exc:
        return Outcome("unknown", error=ctx.redact(f"verify: {exc}"))
    if found is None:
        return Outcome("error", error="verify found no match")
    return Outcome("ok", id=ident, existed=True, captures=_captured(step, found))


def _captured(step: Step, record: Any) -> dict[str, Any]:
    """A step resolved by `verify` has no answer of its own: its `capture` paths are read from
    the matching record (the same resource, as the API lists it); header captures are None."""
    captures = {}
    for name, capture in step.answer_captures.items():
        try:
            captures[name] = capture.path(record) if capture.path is not None else None
        except ExtractError:
            captures[name] = None
    return captures


def _plain(subject: Mapping[str, Any]) -> dict[str, Any]:
    """The subject as the journal stores it (JSON round trip), so comparisons are fair."""
    return orjson.loads(orjson.dumps(dict(subject), option=orjson.OPT_NON_STR_KEYS, default=str))
