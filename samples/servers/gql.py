"""Just enough GraphQL for the Shopify-like server: parse, bind variables, project.

Supports one operation with a selection set of fields, each with optional
arguments (variables, strings, numbers, enums, booleans, null) and an optional
sub-selection. No fragments, aliases or directives. Answers contain exactly the
selected fields; a field the type does not have is an error, like the real API.
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
            sub = self.selection() if self.peek() == "{" else None
            fields.append(Field(name, args, sub))
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
