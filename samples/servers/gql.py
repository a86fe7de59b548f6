"""Just enough GraphQL for the Shopify-like server: parse, bind variables, project.

Supports one operation with a selection set of fields, each with optional
arguments (variables, strings, numbers, enums, booleans, null), optional directives
(``@idempotent(key: "...")``) and an optional sub-selection. No fragments or aliases. Answers
contain exactly the selected fields; a field the type does not have is an error, like the real
API. :func:`cost` computes a query's requested (or, given the answer, actual) cost the way
Shopify documents it (see its docstring).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TOKEN = re.compile(r'\s+|,|#[^\n]*|(\.\.\.|[{}()\[\]:!$=@]|"(?:\\.|[^"\\])*"|-?\d+(?:\.\d+)?|[_A-Za-z]\w*)')


class GraphQLError(Exception):
    """An error that goes into the answer's ``errors`` list."""

    def __init__(self, message: str, code: str = "GRAPHQL_VALIDATION_FAILED") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Field:
    name: str
    args: dict[str, Any]
    selection: list[Field] | None
    directives: dict[str, dict[str, Any]] | None = None


def tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            raise GraphQLError(f"Parse error on {text[pos:pos + 10]!r}")
        if match.group(1):
            tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, variables: dict[str, Any]) -> None:
        self.tokens, self.i, self.variables = tokenize(text), 0, variables

    def take(self, expected: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise GraphQLError("Parse error: unexpected end of document")
        token = self.tokens[self.i]
        if expected is not None and token != expected:
            raise GraphQLError(f"Parse error: expected {expected!r}, got {token!r}")
        self.i += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def document(self) -> tuple[str, list[Field]]:
        kind = "query"
        if self.peek() in ("query", "mutation"):
            kind = self.take()
            if self.peek() not in ("{", "("):
                self.take()  # operation name
            if self.peek() == "(":
                self.skip_group("(", ")")  # variable definitions
        return kind, self.selection()

    def skip_group(self, open_: str, close: str) -> None:
        depth = 0
        while True:
            token = self.take()
            depth += token == open_
            depth -= token == close
            if depth == 0:
                return

    def selection(self) -> list[Field]:
        self.take("{")
        fields = []
        while self.peek() != "}":
            name = self.take()
            args = self.arguments() if self.peek() == "(" else {}
            directives = {}
            while self.peek() == "@":
                self.take("@")
                directive = self.take()
                directives[directive] = self.arguments() if self.peek() == "(" else {}
            sub = self.selection() if self.peek() == "{" else None
            fields.append(Field(name, args, sub, directives))
        self.take("}")
        return fields

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        args = {}
        while self.peek() != ")":
            name = self.take()
            self.take(":")
            args[name] = self.value()
        self.take(")")
        return args

    def value(self) -> Any:
        token = self.take()
        if token == "$":
            return self.variables.get(self.take())
        if token.startswith('"'):
            return json.loads(token)
        if token[0] in "-0123456789":
            return json.loads(token)
        if token in ("[", "{"):
            raise GraphQLError("Inline list/object arguments are not supported; use variables")
        return {"true": True, "false": False, "null": None}.get(token, token)


def parse(text: str, variables: dict[str, Any] | None = None) -> tuple[str, list[Field]]:
    """``(operation kind, root fields)`` with variables already substituted."""
    return _Parser(text, variables or {}).document()


def project(value: Any, selection: list[Field] | None, type_name: str = "Object") -> Any:
    """Keep only the selected fields of ``value`` (dicts, lists, leaves); a callable field value
    is a connection, called with the field's arguments."""
    if selection is None or value is None:
        return value
    if isinstance(value, list):
        return [project(item, selection, type_name) for item in value]
    out = {}
    for field in selection:
        if field.name not in value:
            raise GraphQLError(f"Field '{field.name}' doesn't exist on type '{value.get('__typename', type_name)}'",
                               "undefinedField")
        found = value[field.name]
        if callable(found):                # a connection that takes arguments: lineItems(first, after)
            found = found(field.args)
        out[field.name] = project(found, field.selection, field.name)
    return out


#: Fields of a connection that cost nothing themselves: the page's nodes are counted through
#: the connection's page size, `pageInfo` and `cursor` are free.
_CONNECTION_PARTS = ("nodes", "edges", "node", "pageInfo", "cursor")


def cost(kind: str, fields: list[Field], data: Any = None) -> int:
    """A query's cost as Shopify's "API rate limits" documents it: a scalar or enum 0, an object 1
    plus its selection, a connection (any field sized by ``first``/``last``) 2 plus the page size
    times (1 + the selection of one node) — nested connections multiply — and a mutation field 10.
    With ``data`` (the answer), the actual cost: a connection counts the nodes it returned and a
    null object nothing (Shopify refunds the difference)."""
    if kind == "mutation":
        return 10 * len(fields)
    return sum(_field_cost(f, None if data is None else (data or {}).get(f.name), data is not None)
               for f in fields)


def _field_cost(f: Field, value: Any, actual: bool) -> int:
    if f.selection is None:
        return 0
    if actual and value is None:
        return 0
    size = f.args.get("first") or f.args.get("last")
    if isinstance(size, int):
        items = _items(value) if actual else [None]
        count = len(items) if actual else size
        each = max((_node_cost(f.selection, item, actual) for item in items), default=_node_cost(f.selection, None, False))
        return 2 + count * (1 + each)
    if isinstance(value, list):
        return sum(1 + _children(f.selection, item, actual) for item in value)
    return 1 + _children(f.selection, value, actual)


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("nodes"), list):
            return value["nodes"]
        if isinstance(value.get("edges"), list):
            return [edge.get("node") for edge in value["edges"]]
    return []


def _node_cost(selection: list[Field], item: Any, actual: bool) -> int:
    """The selection of one node of a connection (through ``nodes`` or ``edges { node }``)
    or of one item of a sized list."""
    parts = {f.name: f for f in selection}
    if "nodes" in parts or "edges" in parts:
        via_nodes = _children(parts["nodes"].selection or [], item, actual) if "nodes" in parts else 0
        edge = parts.get("edges")
        node = next((f for f in (edge.selection or []) if f.name == "node"), None) if edge else None
        via_edges = _children(node.selection or [], item, actual) if node else 0
        return max(via_nodes, via_edges)
    return _children([f for f in selection if f.name not in _CONNECTION_PARTS], item, actual)


def _children(selection: list[Field], value: Any, actual: bool) -> int:
    return sum(_field_cost(f, value.get(f.name) if isinstance(value, dict) else None, actual)
               for f in selection if f.name not in ("pageInfo", "cursor"))
