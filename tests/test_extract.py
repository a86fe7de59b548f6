"""JMESPath extraction and the mapping language."""

from __future__ import annotations

import collections

import pytest

from engine import extract
from engine.errors import ExtractError

RECORD = {
    "id": 42,
    "price": "19.90",
    "billing": {"email": "ana@example.com", "first": "Ana", "last": None},
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
    "tags": "gift, rush",
}

MAPPINGS = [
    ("plain path", {"email": "billing.email"}, {"email": "ana@example.com"}),
    ("function", {"id": "to_string(id)", "price": "to_number(price)"}, {"id": "42", "price": 19.9}),
    ("nested object", {"to": {"email": "billing.email"}}, {"to": {"email": "ana@example.com"}}),
    ("each", {"lines": {"each": "items", "map": {"sku": "sku", "quantity": "qty"}}},
     {"lines": [{"sku": "A-1", "quantity": 2}, {"sku": "B-2", "quantity": 1}]}),
    ("each over missing list", {"lines": {"each": "nothing", "map": {"sku": "sku"}}}, {"lines": []}),
    ("default used", {"note": {"value": "note", "default": "none"}}, {"note": "none"}),
    ("default unused", {"id": {"value": "id", "default": 0}}, {"id": 42}),
    ("const", {"currency": {"const": "USD"}}, {"currency": "USD"}),
    ("const with backtick", {"c": {"const": "a`b"}}, {"c": "a`b"}),
    ("missing field is null", {"phone": "billing.phone"}, {"phone": None}),
    ("join_nonempty", {"name": "join_nonempty(' ', [billing.first, billing.last])"}, {"name": "Ana"}),
    ("split", {"tags": "split(tags, ', ')"}, {"tags": ["gift", "rush"]}),
    ("to_int", {"n": "to_int(price)"}, {"n": 19}),
    ("upper/lower", {"u": "upper(billing.first)", "l": "lower(billing.first)"}, {"u": "ANA", "l": "ana"}),
    ("subtract", {"left": "subtract(items[0].qty, items[1].qty)"}, {"left": 1}),
    ("add is exact on decimals", {"n": "add(`0.1`, `0.2`)"}, {"n": 0.3}),
    ("add of integers is an integer", {"n": "add(id, `1`)"}, {"n": 43}),
    ("multiply", {"n": "multiply(to_number(price), items[0].qty)"}, {"n": 39.8}),
    ("divide", {"n": "divide(id, `4`)", "whole": "divide(id, `2`)"}, {"n": 10.5, "whole": 21}),
    ("divide by zero is null", {"n": "divide(id, `0`)"}, {"n": None}),
    ("null operand gives null", {"n": "subtract(items[0].qty, items[0].shipped)"}, {"n": None}),
    ("null defaulted with not_null", {"n": "subtract(items[0].qty, not_null(items[0].shipped, `0`))"}, {"n": 2}),
    ("round half away from zero", {"a": "round(`2.675`, `2`)", "b": "round(`-2.5`, `0`)", "c": "round(`1234`, `-2`)"},
     {"a": 2.68, "b": -3, "c": 1200}),
    ("to_iso8601 with a zone", {"t": "to_iso8601('2026-03-01T19:00:00', 'Asia/Tokyo')"}, {"t": "2026-03-01T10:00:00Z"}),
    ("to_iso8601 keeps an explicit offset", {"t": "to_iso8601('2026-03-01T10:00:00+05:00', 'Asia/Tokyo')"},
     {"t": "2026-03-01T05:00:00Z"}),
    ("to_local", {"t": "to_local('2026-03-01T10:00:00Z', 'America/New_York')"}, {"t": "2026-03-01T05:00:00"}),
    ("time_zone defaults to UTC", {"z": "time_zone()"}, {"z": "UTC"}),
]


@pytest.mark.parametrize(("name", "spec", "expected"), MAPPINGS, ids=[m[0] for m in MAPPINGS])
def test_mapping(name, spec, expected):
    """Each form of the mapping language produces the expected fields in one evaluation."""
    assert extract.compile_mapping(spec)(RECORD) == expected


def test_bad_leaf_reports_its_path():
    """A broken JMESPath leaf names the path of the field inside the map."""
    with pytest.raises(ExtractError) as info:
        extract.compile_mapping({"ship_to": {"city": "a..b"}})
    assert info.value.path == ["ship_to", "city"]
    assert "a..b" in info.value.message


def test_bad_expression_has_position():
    """A syntax error reports where in the expression it is."""
    with pytest.raises(ExtractError) as info:
        extract.compile_path("foo[")
    assert info.value.position == 4
    assert "column 4" in str(info.value)


def test_arithmetic_on_a_string_is_an_error_not_a_guess():
    """A string operand is refused with a clear error (to_number() first), never read as a number."""
    with pytest.raises(ExtractError, match="invalid type for value: 19.90"):
        extract.compile_path("subtract(price, `1`)")(RECORD)


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_time_zone_is_the_zone_a_path_is_compiled_for(zone):
    """time_zone() answers the zone the expression was compiled for, so to_iso8601 reads local times in it."""
    path = extract.compile_path("[time_zone(), to_iso8601(t, time_zone())]", zone)
    local = {"Asia/Tokyo": "2026-01-06T08:12:00Z", "America/New_York": "2026-01-06T22:12:00Z"}
    assert path({"t": "2026-01-06T17:12:00"}) == [zone, local[zone]]


def test_runtime_failure_is_extract_error():
    """A type error while evaluating becomes an ExtractError, not a jmespath exception."""
    with pytest.raises(ExtractError, match="failed"):
        extract.compile_path("join(', ', items)")(RECORD)


@pytest.mark.parametrize(("expr", "holds"), [("id == `42`", True), ("id == `1`", False), ("items", True),
                                             ("nothing", False), ("`[]`", False), ("`0`", True)])
def test_predicate_truthiness(expr, holds):
    """Predicates follow JMESPath truthiness: false, null, '', [] and {} are false; 0 is true."""
    assert extract.compile_predicate(expr)(RECORD) is holds


DOCUMENT = {
    "id": 42, "zero": 0, "one": 1, "yes": True, "no": False, "none": None, "empty": "", "text": "abc",
    "price": "19.90", "nums": [3, 1, 2], "mixed": [1, "a", None, [2, [3]], {"k": 1}],
    "billing": {"email": "ana@example.com", "first": "Ana", "last": None, "tags": ["a", "b"]},
    "items": [{"sku": "A-1", "qty": 2, "price": "1.50", "tags": ["x"]}, {"sku": "B-2", "qty": 1, "price": 3},
              {"sku": None, "qty": 0, "tags": ["y", "z"]}],
    "nested": [[1, 2], [3, [4, 5]], 6],
    "obj": {"a": {"v": 1}, "b": {"v": 2}, "c": {"w": 3}},
}

#: expressions whose compiled evaluation must equal jmespath.search's, result or error
EXPRESSIONS = [
    "id", "billing.email", "billing.missing.deeper", "text.length", "items[0].sku", "items[-1].qty",
    "items[7]", "billing[0]", "@", "@.id", "items[].sku", "items[*].qty", "billing.*", "obj.*.v",
    "obj.*", "items[?qty > `1`].sku", "items[?sku].sku", "items[?qty == `0`]", "items[?!sku]",
    "nested[]", "nested[][]", "mixed[]", "nums[1:]", "nums[::-1]", "nums[:2]", "text[1:]",
    "items[].tags[]", "items[*].tags[0]", "`[1, 2]`", "'lit'", "`null`", "{a: id, b: billing.first}",
    "[id, text]", "none.{a: id}", "none.[id]", "billing.last || billing.first", "empty || `0`",
    "zero || `5`", "no || none", "id && text", "empty && id", "!zero", "!one", "!empty", "!yes",
    "!none", "!`[]`", "id == `42`", "id != `42`", "one == yes", "zero == no", "one != yes",
    "text == 'abc'", "text != 'abc'", "billing.first == text", "none == none", "id == '42'", "one == `1.0`",
    "id > `41`", "text < 'b'", "text > `1`", "none < `1`", "nums | [0]", "items[].sku | [1]",
    "to_string(id)", "to_string(text)", "to_string(nums)", "to_string(none)", "to_number(price)",
    "to_number(id)", "to_number(text)", "to_number(yes)", "to_number('1e3')", "not_null(none, id)",
    "not_null(none, none)", "not_null(none)", "join(', ', billing.tags)", "join('-', nums)",
    "join(`1`, billing.tags)", "join(' ', [billing.first, billing.last])", "sum(nums)",
    "sum(items[].qty)", "sum(billing.tags)", "sum(items[].to_number(price))", "map(&sku, items)",
    "map(&qty, none)", "map(&{s: sku}, items)", "map(id, items)", "length(text)", "length(id)",
    "sort_by(items, &qty)[].sku", "max_by(items, &qty).sku", "keys(obj)", "values(billing)",
    "contains(billing.tags, 'a')", "starts_with(text, 'ab')", "type(id)", "merge(obj.a, obj.c)",
    "abs(`-3`)", "to_array(id)", "reverse(nums)", "avg(nums)", "max(nums)", "min(billing.tags)",
    "sort(nums)", "join_nonempty(' ', [billing.first, billing.last])", "to_iso8601('Mon, 05 Jan 2026 08:07:00 +0000')",
    "to_int(price)", "split(text, 'b')", "upper(text)", "lower(none)", "unknown_fn(id)",
    "to_string(id, text)", "&sku", "items[?contains(tags, 'x')].sku", "obj.a.v == obj.b.v",
    "{\"x y\": billing.email, n: {m: nums[0]}}", "\"billing\".\"email\"", "items[0].[sku, qty]",
    # arithmetic and time zones: values, nulls, wrong types, wrong arity, unknown zones
    "add(id, one)", "add(id, `0.5`)", "add(none, id)", "add(text, id)", "add(yes, id)", "add(id)",
    "subtract(items[0].qty, items[1].qty)", "subtract(items[0].qty, items[2].missing)", "subtract(nums, id)",
    "multiply(`1.1`, `3`)", "multiply(id, zero)", "divide(id, zero)", "divide(id, `8`)", "divide(none, zero)",
    "round(`2.5`, `0`)", "round(`2.345`, `2`)", "round(none, `1`)", "round(id, `0.5`)", "round(id, none)",
    "sum(items[].qty) | subtract(@, `1`)", "map(&subtract(qty, `1`), items)",
    "to_iso8601('2026-03-08T02:30:00', 'America/New_York')", "to_iso8601('2026-11-01T01:30:00', 'America/New_York')",
    "to_iso8601(text, 'UTC')", "to_iso8601(none, 'UTC')", "to_iso8601(`1767600000`, 'Asia/Tokyo')",
    "to_iso8601('2026-01-01T00:00:00', 'Mars/Base')", "to_iso8601('2026-01-01T00:00:00', id)",
    "to_iso8601('2026-01-01T00:00:00', 'UTC', 'UTC')", "to_local('2026-07-01T12:00:00Z', 'Europe/Paris')",
    "to_local(none, 'Europe/Paris')", "to_local(text, 'Europe/Paris')", "to_local(id, none)", "time_zone()",
    "time_zone(id)",
]


#: more expressions for the generated source: a mapping's shapes nested, or/and inside objects,
#: joins of lists with null or non-string items, to_number of every kind of text
MORE_EXPRESSIONS = [
    "{a: {b: {c: billing.email, d: billing.first}, e: billing.email}, f: billing.first}",
    "{a: billing.last || billing.first, b: billing.first && billing.last, c: billing.first}",
    "{a: none || billing.email, b: none.x || `null`, c: empty || none || `[]`}",
    "join(' ', [billing.first, billing.last])", "join(' ', [billing.first, text])", "join('', [id, text])",
    "join(`1`, [text])", "join(' ', [])", "none.{a: join('-', [text, text])}", "join(text, [text, 'z'])",
    "to_number('1.5')", "to_number('15')", "to_number(' 7 ')", "to_number('1_000')", "to_number('1.2.3')",
    "to_number('.5')", "to_number('nan')", "to_number('1e2')", "to_number('x.y')", "to_number(none)",
    "to_number(nums)", "to_number(`1.5`)", "to_string(yes)", "to_string(`1.5`)",
    "map(&{s: sku, q: to_number(price), t: tags[0] || 'none'}, items || `[]`)",
    "map(&{s: sku}, none || `[]`)", "map(&sku, text)", "sum(items[].to_number(price))",
    "sum(none[].qty)", "items[].{s: sku, n: qty}", "nested[][]", "items[].tags[].length(@)",
    "{a: items[0].sku, b: items[0].qty, c: items[1].sku}", "[billing.first, [billing.last, id]]",
    "{a: `{\"k\": 1}`.k, b: `{\"k\": 2}`.k}", "items[-4]", "nums[-1]", "@ | @.id",
    "{a: obj.*.v, b: items[?qty > `0`].sku}",
    # a subtree computed twice, or first in a branch that may not have run
    "[to_string(id), {a: to_string(id), b: id == `42`, c: id == `42`}]", "[text || to_string(id), to_string(id)]",
    "[none || to_string(id), to_string(id)]", "[none.{a: to_string(id)}, to_string(id)]",
    "[join('', [text, 'Z']), id == `42` && {u: join('', [text, 'Z'])}]",
    "[none.[join('', [text, 'Z'])], join('', [text, 'Z'])]", "[billing.last && sum(nums), sum(nums)]",
    "[join(' ', [billing.first, billing.last]), billing.email, none.{a: billing.email}, billing.email]",
    # sum of a projection: nested lists, nulls, booleans, strings, errors in the items, order of errors
    "sum(`[1, null, 2.5, [3, 4]]`[])", "sum(`[[1], 2]`[])", "sum(`[1, true]`[])", "sum(`[1, [\"a\"]]`[])",
    "sum(`[{\"v\": 1}, {\"v\": null}, {}, 3]`[].v)", "sum(`[{\"v\": \"1.5\"}, {\"v\": 2}, {\"v\": \"x\"}]`[].to_number(v))",
    "sum(`[]`[])", "sum(`[1.5, 2]`[*])", "sum(`[[1.5], 2]`[*])", "sum(`[0.1, 0.2, 0.3]`[])", "sum(text[].x)",
    "sum(items[*].qty)", "sum(items[].price)", "sum(items[].sum(tags[].length(@)))", "sum(mixed[])", "sum(nested[])",
    "sum(nested[][])", "sum(`[\"x\", {\"v\": \"a\"}]`[].abs(v))", "sum(`[[1], {\"v\": \"a\"}]`[].abs(v))",
    "sum(`[1, {\"v\": \"a\"}]`[].abs(v))", "sum(`[{\"v\": \"a\"}, \"s\"]`[*].abs(v))", "sum(obj.*.v)",
    "to_number(' 12.5 ')", "to_number('1_0.5')", "to_number('٣.٥')", "to_number('٣')", "to_number('inf')",
    "to_number('-inf.')", "to_number('1.')", "to_number('1e3.0')", "to_number('.')", "to_number('1.5e3')",
    "to_number('+1.5')", "to_number('1.5\\n')", "to_number('')", "to_number('1__0.5')", "to_number(billing)",
    "text == 'abc' && 'abc' == text", "id == 'x'", "'x' != none", "'a' == 'a'", "`1` == 'a'",
    "{t: sum(items[].qty), n: items[0].qty}",
    "map(&sum(tags[].length(@)), items)", "map(&map(&@, tags), items)", "map(&[sku, sku], items)",
    "map(&@, `[null, 1]`)", "map(&to_string(qty), `[1, null, \"a\", {\"qty\": 2}]`)", "map(&abs(@), `[1, \"a\"]`)",
    "[map(&to_string(@), nums), to_string(@), map(&to_string(@), nums)]", "map(&sku || qty, items || `[]`)", "sum(`[{\"v\": 1}, [{\"v\": 2}]]`[].v)",
]
#: documents the expressions are evaluated on: the record, and what a bad record may be instead
DOCUMENTS = [DOCUMENT, None, [DOCUMENT], "text", 7, {"billing": "flat", "items": {"sku": 1}, "nums": "123"},
             collections.defaultdict(list, DOCUMENT)]      # its [] of a missing key is not .get's None


def _outcome(evaluate):
    try:
        return "ok", evaluate()
    except Exception as exc:  # noqa: BLE001 - comparing whatever is raised
        return type(exc).__name__, str(exc)


def _subscripted(node):
    """compile_source with the subscript version tried first whatever the fields read
    (`jmespath_source._subscripted`: it must never change an answer, only its cost)."""
    from engine import jmespath_source
    threshold, jmespath_source.SUBSCRIPT_FIELDS = jmespath_source.SUBSCRIPT_FIELDS, 0
    try:
        return extract.compile_source(node)
    finally:
        jmespath_source.SUBSCRIPT_FIELDS = threshold


@pytest.mark.parametrize("compiler", [extract.compile_ast, extract.compile_source, _subscripted],
                         ids=["closures", "source", "subscript"])
@pytest.mark.parametrize("expression", EXPRESSIONS + MORE_EXPRESSIONS)
def test_compiled_matches_interpreter(expression, compiler):
    """Both compiled forms give what jmespath's interpreter gives, value or error, for every node
    type, on a record and on values that are not one."""
    import jmespath

    compiled = compiler(jmespath.compile(expression).parsed)
    for document in DOCUMENTS:
        expected = _outcome(lambda: jmespath.search(expression, document, options=extract.OPTIONS))
        got = _outcome(lambda: compiled(document))
        if expression == "&sku":
            assert type(got[1]).__name__ == type(expected[1]).__name__ == "_Expression"
        else:
            # repr: tells 1 from 1.0 and True inside results, and NaN equals NaN
            assert (got[0], repr(got[1])) == (expected[0], repr(expected[1])), document
            assert type(got[1]) is type(expected[1])


def _connector_maps():
    import yaml

    from engine import ROOT
    for path in sorted((ROOT / "connectors").rglob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        for name, operation in (spec.get("operations") or {}).items():
            if "map" in operation:
                yield pytest.param(operation["map"], id=f"{spec['name']}.{name}")


@pytest.mark.parametrize("spec", list(_connector_maps()))
def test_connector_maps_match_interpreter(spec):
    """Every shipped connector's map gives the interpreter's result on every example record."""
    import json

    import jmespath

    from engine import ROOT
    expression = extract.mapping_expression(spec)
    mapping = extract.compile_mapping(spec)
    for example in sorted((ROOT / "connectors" / "examples").glob("*.json")):
        data = json.loads(example.read_text(encoding="utf-8"))
        for record in (data if isinstance(data, list) else [data, *data.values()] if isinstance(data, dict) else []):
            try:
                expected = jmespath.search(expression, record, options=extract.OPTIONS)
            except jmespath.exceptions.JMESPathError:
                with pytest.raises(ExtractError):
                    mapping(record)
                continue
            assert mapping(record) == expected


class _CountingDict(dict):
    """A record that counts its lookups (the generated code reads a dict subclass through `.get`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.reads: dict[str, int] = {}

    def get(self, key, default=None):
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)


def _generated(expression: str) -> str:
    """The source `compile_source` writes for `expression`."""
    import jmespath

    from engine import jmespath_compile, jmespath_source
    source = jmespath_source._Source(jmespath_compile._Compiler(extract.OPTIONS))
    source.define(jmespath.compile(expression).parsed)
    return "\n\n".join(source.functions)


def test_a_field_read_by_an_unconditional_join_or_object_is_not_read_again():
    """What a `join(s, [...])` or an object of a value known present looked up stays known after it."""
    record = _CountingDict(ship=_CountingDict(first="Ana", last="Lee", city="Oslo"))
    evaluate = extract.compile_source(extract._parse(
        "{o: {n: join(' ', [ship.first, ship.last]), c: ship.city}, t: {c: ship.city}}").parsed)
    assert evaluate(record) == {"o": {"n": "Ana Lee", "c": "Oslo"}, "t": {"c": "Oslo"}}
    assert record.reads == {"ship": 1} and record["ship"].reads == {"first": 1, "last": 1, "city": 1}


def test_a_field_first_read_in_a_branch_is_read_again_after_it():
    record = _CountingDict(a="x", b=_CountingDict(c=1))
    evaluate = extract.compile_source(extract._parse("[a || b.c, b.c]").parsed)
    assert evaluate(record) == ["x", 1] and record.reads == {"a": 1, "b": 1}


def test_an_identical_pure_subtree_is_computed_once():
    """A key and a field both `to_string(id)`, a watermark and a field both the same join, a filter
    and its guard: one computation each, also when the second is inside the guarded object."""
    text = _generated("[to_string(id), join('', [d, 'Z']), s == 'p', (s == 'p') && {o: to_string(id), "
                      "u: join('', [d, 'Z'])}]")
    assert text.count("str(") == 1 and text.count(".join(") == 1 and text.count("_equals") + text.count(" == c") == 1


def test_a_subtree_first_computed_in_a_branch_is_computed_again_after_it():
    text = _generated("[a || to_string(id), to_string(id)]")
    assert text.count("str(") == 2


def test_a_list_or_object_value_is_not_shared_between_two_places():
    """A computed list is a new list each time, as jmespath makes it: changing one changes no other."""
    evaluate = extract.compile_source(extract._parse("[nums[*], nums[*], {a: id}, {a: id}]").parsed)
    first, second, third, fourth = evaluate({"nums": [1], "id": 1})
    assert first is not second and third is not fourth


def test_a_sum_of_a_projection_is_one_loop_of_the_function():
    """No flattened copy, no call of the projected expression per item: the item's field is read
    in the function itself."""
    main = _generated("sum(items[].to_number(price))").split("\n\n")[-1]
    assert "get('price')" in main.split("_call('sum'")[0]


def test_to_number_of_a_decimal_text_and_a_comparison_with_a_text_are_inline():
    """A price text is float() in the function itself; a text constant is not asked its type."""
    assert "float(" in _generated("to_number(p)") and "type(c" not in _generated("s == 'p'")


def test_map_is_a_loop_of_the_function():
    """No call of the mapped expression per item: the item's field is read in the function itself."""
    assert "get('sku')" in _generated("map(&sku, items)").split("\n\n")[-1]


def test_the_subscript_version_answers_as_the_interpreter_does_on_any_record():
    """A map reading 8 fields or more is tried first as subscripts (`record["id"]`); a record
    that is not a dict exactly, or lacks a key, gets the interpreter's answer all the same: a
    defaultdict's [] would make up a value where .get gives null."""
    import jmespath

    spec = {name: name for name in "abcdefgh"} | {"nested": {"x": "n.x", "y": "n.y"}}
    mapping, expression = extract.compile_mapping(spec), extract.mapping_expression(spec)
    full = {name: index for index, name in enumerate("abcdefgh")} | {"n": {"x": 1, "y": 2}}
    for record in (full, {"a": 1}, collections.defaultdict(list, full),
                   collections.defaultdict(list, {"a": 1, "n": collections.defaultdict(int)}),
                   {**full, "n": None}, {**full, "n": [1]}):
        expected = jmespath.search(expression, record, options=extract.OPTIONS)   # before: [] adds keys
        assert mapping(record) == expected, record


def test_the_subscript_version_is_given_up_where_records_often_lack_a_key():
    """Records that mostly lack a key the map reads (Magento leaves a missing field out) would
    be evaluated twice each: past SUBSCRIPT_MISSES misses in a quarter of the tries, only the
    .get version runs; records that rarely miss keep the subscript version."""
    from engine import jmespath_source

    calls = {"fast": 0, "safe": 0}

    def fast(record):
        calls["fast"] += 1
        if record.get("missing"):
            raise KeyError("company")
        return "fast"

    def safe(record):
        calls["safe"] += 1
        return "safe"

    often = jmespath_source._subscripted(lambda: fast, safe)
    assert [often({"missing": True}) for _ in range(1000)] == ["safe"] * 1000
    assert calls["fast"] == jmespath_source.SUBSCRIPT_MISSES + 1 and calls["safe"] == 1000
    calls.update(fast=0, safe=0)
    rarely = jmespath_source._subscripted(lambda: fast, safe)
    answers = [rarely({"missing": n % 10 == 0}) for n in range(1000)]
    assert calls["fast"] == 1000 and answers.count("fast") == 900
