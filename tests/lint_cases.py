"""The table of broken specs: each case is a small spec with ONE problem, the fragment of the
message lint must give, and the line and path it must be reported at.

Most cases are the clean `CART` (or `INTEGRATION`) with one line changed by `edit`, so every
case reads as a diff against a spec that lints clean.
"""

from __future__ import annotations

from dataclasses import dataclass


#: An `enrich` block and a `truncated_when` that lint clean, inserted after `records: data`.
ENRICH = """\
    records: data
    enrich:
      - request: {path: "/orders/{{ record.id }}/lines"}
        records: items
        into: lines
        merge: append
        set: {page: meta}
    truncated_when: more
"""


@dataclass(frozen=True)
class SpecCase:
    id: str
    message: str   # a fragment of the finding's message, expected or hint
    line: int
    path: str
    yaml_text: str


CART = """\
name: shop
kind: cart
spec_version: 1
config:
  required: [site_url, api_key]
  properties:
    site_url: {type: string, format: uri}
    api_key: {type: string, secret: true}
http:
  base_url: "{{ config.site_url }}/api"
  auth: {type: bearer, token: "{{ config.api_key }}"}
  retry: {attempts: 3, on_status: [429, 503], when: "error == 'throttled'"}
operations:
  list_orders:
    request:
      path: /orders
      params: {updated_after: "{{ since }}", per_page: 50}
    paginate:
      type: page_number
      param: page
      stop: [{type: empty_page}, {type: has_more, path: meta.more}]
    records: data
    key: to_string(id)
    watermark: updated
    filter: "status == 'paid'"
    map:
      order_id: to_string(id)
      order_number: to_string(number)
      created_at: created
      ship_to: {name: to.name, address1: to.street, city: to.city, country: to.country}
      lines: {each: items, map: {sku: sku, quantity: qty}}
  create_shipment:
    request:
      method: POST
      path: "/orders/{{ order.order_id }}/shipments"
      json: {tracking: "{{ package.tracking_number }}", count: "{{ shipment.packages | length }}"}
    verify: {request: {path: "/trackings", params: {order: "{{ order.key }}"}}, records: "@", match: "record.tracking == package.tracking_number", id: to_string(id)}
    already_exists: {status: [409], when: "code == 'dup'"}
examples:
  - name: one paid order
    operation: list_orders
    response:
      body: {data: [{id: 7, number: 1007, status: paid, created: "2026-01-02T03:04:05Z",
             to: {name: Ann, street: 1 Main St, city: Oslo, country: "NO"},
             items: [{sku: A-1, qty: 2}]}]}
    expect:
      records:
        - {key: "7", order_id: "7", order_number: "1007", created_at: "2026-01-02T03:04:05Z",
           ship_to: {name: Ann, address1: 1 Main St, city: Oslo, country: "NO"},
           lines: [{sku: A-1, quantity: 2}]}
"""

WMS = """\
name: warehouse
kind: wms
spec_version: 1
config:
  required: [account]
  properties:
    account: {type: string}
    password: {type: string, secret: true}
    time_zone: {type: string, format: iana-time-zone, default: UTC}
http:
  base_url: https://wms.test
  auth: {type: basic, username: "{{ config.account }}", password: "{{ config.password }}"}
operations:
  create_order:
    request: {method: POST, path: /orders, json: {ref: "{{ order.key }}"}}
    id: orderId
  find_order:
    request: {path: /orders, params: {ref: "{{ order.key }}"}}
    records: items
    match: "record.ref == order.key"
    id: orderId
"""

INTEGRATION = """\
name: shop-to-warehouse
spec_version: 1
source:
  connector: shop
  config: {site_url: "https://shop.test", api_key: "${env:SHOP_KEY}"}
destination:
  connector: warehouse
  config: {account: acme, password: "${file:secrets/wms.txt}"}
start_date: "2026-01-01T00:00:00Z"
flows:
  orders: {enabled: true, every: 5m}
  shipments: {enabled: false}
order_filters:
  - {name: no-tests, when: "!contains(tags || `[]`, 'test')"}
"""


def edit(base: str, old: str, new: str) -> str:
    """`base` with the one occurrence of `old` replaced by `new` (fails loudly if ambiguous)."""
    assert base.count(old) == 1, f"{old!r} occurs {base.count(old)} times"
    return base.replace(old, new)


def cart(old: str, new: str) -> str:
    return edit(CART, old, new)


def integration(old: str, new: str) -> str:
    return edit(INTEGRATION, old, new)


def wms(old: str, new: str) -> str:
    return edit(WMS, old, new)
#: OAuth2 client credentials with the token in a custom header, requested with a JSON body.
OAUTH_CART = cart('  auth: {type: bearer, token: "{{ config.api_key }}"}', """\
  auth:
    type: oauth2_client_credentials
    token_url: "{{ config.site_url }}/oauth/token"
    client_id: "{{ config.api_key }}"
    client_secret: "{{ config.api_key }}"
    token_body: json
    place: {header: X-Access-Token, value: "{{ token }}"}""")
#: The clean WMS with OAuth2 on a literal token URL on a listed host, the token in the query.
OAUTH_WMS = edit(WMS, '  auth: {type: basic, username: "{{ config.account }}", password: "{{ config.password }}"}', """\
  auth:
    type: oauth2_refresh_token
    token_url: https://login.wms.test/token
    token_hosts: [login.wms.test]
    client_id: "{{ config.account }}"
    client_secret: "{{ config.password }}"
    refresh_token: "{{ config.password }}"
    place: {query: access_token}""")


def oauth_cart(old: str, new: str) -> str:
    return edit(OAUTH_CART, old, new)


def oauth_wms(old: str, new: str) -> str:
    return edit(OAUTH_WMS, old, new)


OP = "operations.list_orders"
WRITE_VERIFY = '    verify: {request: {path: "/trackings", params: {order: "{{ order.key }}"}}, records: "@", match: "record.tracking == package.tracking_number", id: to_string(id)}\n'
#: create_shipment (request, verify, already_exists), to be replaced by a multi-step one
WRITE_OP = CART[CART.index("  create_shipment:"):CART.index("examples:")]
STEPS = """\
  create_shipment:
    steps:
      - name: note
        request: {method: POST, path: "/orders/{{ order.order_id }}/notes", json: {note: "{{ package.tracking_number }}"}}
        capture: {note_id: {path: id}}
        verify: {request: {path: "/orders/{{ order.order_id }}/notes"}, match: "contains(record.note, package.tracking_number)"}
      - name: complete
        request: {method: PUT, path: "/orders/{{ order.order_id }}", json: {status: done, note: "{{ steps.note.note_id }}"}}
"""
PACING = "  pacing: {}\n  retry: {{attempts: 3"     # a pacing line before the retry line

INVALID_SPECS = [
    # misspelt keys at several depths, each with the closest valid key
    SpecCase("top-level-key", "did you mean 'operations'?", 13, "operatons",
             cart("operations:", "operatons:")),
    SpecCase("http-key", "did you mean 'base_url'?", 10, "http.baseurl",
             cart('  base_url: "{{ config.site_url }}/api"', '  baseurl: "{{ config.site_url }}/api"')),
    SpecCase("paginator-key", "did you mean 'param'?", 20, f"{OP}.paginate.parm",
             cart("      param: page", "      parm: page")),
    SpecCase("operation-key", "did you mean 'records'?", 22, f"{OP}.record",
             cart("    records: data", "    record: data")),
    SpecCase("request-key", "did you mean 'params'?", 17, f"{OP}.request.param",
             cart("      params: {updated_after", "      param: {updated_after")),
    SpecCase("retry-key", "did you mean 'attempts'?", 12, "http.retry.attempt",
             cart("retry: {attempts: 3", "retry: {attempt: 3")),
    SpecCase("example-key", "did you mean 'expect'?", 46, "examples[0].expected",
             cart("    expect:\n      records:", "    expected:\n      records:")),
    SpecCase("operation-name", "did you mean 'list_orders'?", 14, "operations.list_order",
             cart("  list_orders:", "  list_order:")),
    # bad enum values and types
    SpecCase("kind-enum", "did you mean 'cart'?", 2, "kind", cart("kind: cart", "kind: crat")),
    SpecCase("paginator-type", "did you mean 'page_number'?", 19, f"{OP}.paginate.type",
             cart("type: page_number", "type: page_numbr")),
    SpecCase("auth-type", "did you mean 'bearer'?", 11, "http.auth.type",
             cart("auth: {type: bearer", "auth: {type: beerer")),
    SpecCase("stop-type", "did you mean 'empty_page'?", 21, f"{OP}.paginate.stop[0].type",
             cart("stop: [{type: empty_page}", "stop: [{type: empty_pages}")),
    SpecCase("method-enum", "one of: 'GET', 'POST'", 34, "operations.create_shipment.request.method",
             cart("      method: POST", "      method: SEND")),
    SpecCase("wrong-type", "expected an integer, got a string", 12, "http.retry.attempts",
             cart("attempts: 3", "attempts: three")),
    SpecCase("spec-version", "expected 1, got 2", 3, "spec_version",
             cart("spec_version: 1", "spec_version: 2")),
    SpecCase("op-not-for-kind", "not allowed here", 14, "operations.create_order",
             cart("  list_orders:", "  create_order:")),
    # missing required keys
    SpecCase("missing-records", "missing required key 'records'", 14, OP,
             cart("    records: data\n", "")),
    SpecCase("missing-has-more-path", "missing required key 'path'", 21, f"{OP}.paginate.stop[1]",
             cart("{type: has_more, path: meta.more}", "{type: has_more}")),
    # YAML itself
    SpecCase("duplicate-key", "duplicate key 'key' (first defined at line 23)", 24, f"{OP}.key",
             cart("    key: to_string(id)\n", "    key: to_string(id)\n    key: id\n")),
    SpecCase("yaml-syntax", "invalid YAML", 17, "",
             cart("per_page: 50}", "per_page: 50")),
    SpecCase("yaml-indent", "invalid YAML", 23, "",
             cart("    key: to_string(id)", "      key: to_string(id)")),
    # templates
    SpecCase("unclosed-template", "close every '{{' with '}}'", 35,
             "operations.create_shipment.request.path",
             cart('"/orders/{{ order.order_id }}/shipments"', '"/orders/{{ order.order_id /shipments"')),
    SpecCase("unknown-variable", "did you mean 'order'?", 35,
             "operations.create_shipment.request.path",
             cart("{{ order.order_id }}", "{{ ordr.order_id }}")),
    SpecCase("variable-out-of-context", "unknown template variable 'order'", 17,
             f"{OP}.request.params.updated_after", cart("{{ since }}", "{{ order.since }}")),
    SpecCase("block-template", "template syntax error", 12, "http.base_url",
             cart('  base_url: "{{ config.site_url }}/api"',
                  "  base_url: |-\n    {{ config.site_url }}\n    /api{% if %}")),
    # JMESPath in each position that holds it
    SpecCase("jmespath-records", "invalid JMESPath", 22, f"{OP}.records",
             cart("records: data", "records: data[")),
    SpecCase("jmespath-key", "did you mean 'to_string'?", 23, f"{OP}.key",
             cart("key: to_string(id)", "key: to_strin(id)")),
    SpecCase("jmespath-filter", "invalid JMESPath", 25, f"{OP}.filter",
             cart("\"status == 'paid'\"", "\"status == \"")),
    SpecCase("jmespath-map-leaf", "invalid JMESPath", 27, f"{OP}.map.order_id",
             cart("order_id: to_string(id)", "order_id: to_string(id")),
    SpecCase("jmespath-each", "invalid JMESPath", 31, f"{OP}.map.lines.each",
             cart("{each: items,", "{each: 'items[',")),
    SpecCase("jmespath-stop-path", "invalid JMESPath", 21, f"{OP}.paginate.stop[1].path",
             cart("path: meta.more}", "path: meta..more}")),
    SpecCase("jmespath-retry-when", "invalid JMESPath", 12, "http.retry.when",
             cart("when: \"error == 'throttled'\"", "when: \"error = 'throttled'\"")),
    SpecCase("jmespath-already-exists", "invalid JMESPath", 38,
             "operations.create_shipment.already_exists.when",
             cart("when: \"code == 'dup'\"", "when: \"code == {{ x }}\"")),
    SpecCase("jmespath-id", "invalid JMESPath", 37, "operations.create_shipment.verify.id",
             cart("id: to_string(id)}", "id: to_string(id))}")),
    # enrich steps and truncated_when (one block inserted after `records:`)
    SpecCase("enrich-variable", "unknown template variable 'since'", 24, f"{OP}.enrich[0].request.path",
             cart("    records: data\n", ENRICH.replace("{{ record.id }}", "{{ since }}"))),
    SpecCase("enrich-record-in-list", "unknown template variable 'record'", 17,
             f"{OP}.request.params.updated_after", cart("{{ since }}", "{{ record.since }}")),
    SpecCase("enrich-jmespath", "invalid JMESPath", 25, f"{OP}.enrich[0].records",
             cart("    records: data\n", ENRICH.replace("records: items", "records: items["))),
    SpecCase("enrich-into", "does not match", 26, f"{OP}.enrich[0].into",
             cart("    records: data\n", ENRICH.replace("into: lines", "into: lines..x"))),
    SpecCase("enrich-merge", "did you mean 'append'?", 27, f"{OP}.enrich[0].merge",
             cart("    records: data\n", ENRICH.replace("merge: append", "merge: appendd"))),
    SpecCase("enrich-set", "invalid JMESPath", 28, f"{OP}.enrich[0].set.page",
             cart("    records: data\n", ENRICH.replace("{page: meta}", "{page: 'meta['}"))),
    SpecCase("truncated-when", "invalid JMESPath", 29, f"{OP}.truncated_when",
             cart("    records: data\n", ENRICH.replace("truncated_when: more", "truncated_when: more["))),
    # every write can be resolved after a lost answer (engine/specs/guarantees.py)
    SpecCase("write-unresolvable", "may not be repeated, and declares no way", 32, "operations.create_shipment",
             cart(WRITE_VERIFY, "")),
    SpecCase("write-unresolvable-hint", "`verify` (a read whose `match` finds its effect)", 32,
             "operations.create_shipment", cart(WRITE_VERIFY, "")),
    SpecCase("skip-when-needs-precondition", "skip_when needs a precondition", 37,
             "operations.create_shipment.skip_when", cart(WRITE_VERIFY, "    skip_when: \"pre.done\"\n")),
    SpecCase("verify-needs-match", "missing required key 'match'", 37, "operations.create_shipment.verify",
             cart(", match: \"record.tracking == package.tracking_number\"", "")),
    SpecCase("verify-match-jmespath", "invalid JMESPath", 37, "operations.create_shipment.verify.match",
             cart("record.tracking == package.tracking_number", "record.tracking = package.tracking_number")),
    SpecCase("verify-variable", "unknown template variable 'orders'", 37,
             "operations.create_shipment.verify.request.params.order", cart("{order: \"{{ order.key }}\"}", "{order: \"{{ orders.key }}\"}")),
    SpecCase("idempotency-key-now", "unknown template variable 'now'", 37, "operations.create_shipment.idempotency_key",
             cart(WRITE_VERIFY, "    idempotency_key: \"{{ order.key }}-{{ now }}\"\n")),
    SpecCase("step-names-twice", "step name 'note' is used twice", 38, "operations.create_shipment.steps[1].name",
             cart(WRITE_OP, STEPS.replace("name: complete", "name: note"))),
    SpecCase("step-unresolvable", "may not be repeated", 38, "operations.create_shipment.steps[1]",
             cart(WRITE_OP, STEPS.replace("method: PUT", "method: POST"))),
    SpecCase("step-variable", "unknown template variable 'step'", 39, "operations.create_shipment.steps[1].request.json.note",
             cart(WRITE_OP, STEPS.replace("steps.note.note_id", "step.note.note_id"))),
    SpecCase("steps-and-request", "has both `request` and `steps`", 40, "operations.create_shipment.request",
             cart(WRITE_OP, STEPS + "    request: {method: PUT, path: /x}\n")),
    SpecCase("neither-request-nor-steps", "missing a required key: 'request' or 'steps'", 32,
             "operations.create_shipment", cart(WRITE_OP, "  create_shipment:\n    per: package\n")),
    SpecCase("reference-variable", "unknown template variable 'shipment'", 17, "operations.create_order.reference",
             wms("    id: orderId\n  find_order:", "    id: orderId\n    reference: \"R-{{ shipment.key }}\"\n  find_order:")),
    SpecCase("find-order-needs-match", "missing required key 'match'", 17, "operations.find_order",
             wms('    match: "record.ref == order.key"\n', "")),
    SpecCase("already-exists-needs-find-order", "no find_order", 17, "operations.create_order.already_exists",
             wms("    id: orderId\n  find_order:\n    request: {path: /orders, params: {ref: \"{{ order.key }}\"}}\n    records: items\n    match: \"record.ref == order.key\"\n    id: orderId\n",
                 "    id: orderId\n    already_exists: {status: [409]}\n")),
    # rate-limit feedback (http.pacing) and the throttle budget
    SpecCase("pacing-type", "did you mean 'used_limit'?", 12, "http.pacing.type",
             cart("  retry: {attempts: 3", PACING.format("{type: used_lmit, header: X-Call-Limit, per_second: 2}"))),
    SpecCase("pacing-leak-rate", "missing required key 'per_second'", 12, "http.pacing",
             cart("  retry: {attempts: 3", PACING.format("{type: used_limit, header: X-Call-Limit}"))),
    SpecCase("pacing-reset-unit", "one of: 'seconds', 'milliseconds', 'epoch_seconds'", 12,
             "http.pacing.reset_unit",
             cart("  retry: {attempts: 3", PACING.format(
                 "{type: remaining_reset, remaining: X-Left, reset: X-Reset, reset_unit: minutes}"))),
    SpecCase("pacing-cost-path", "invalid JMESPath", 12, "http.pacing.available",
             cart("  retry: {attempts: 3", PACING.format(
                 "{type: cost_bucket, available: 'cost.available[', restore_rate: cost.rate}"))),
    SpecCase("pacing-actual-path", "invalid JMESPath", 12, "http.pacing.actual",
             cart("  retry: {attempts: 3", PACING.format(
                 "{type: cost_bucket, available: a, restore_rate: r, actual: 'cost.actual =='}"))),
    SpecCase("pacing-policy-key", "did you mean 'policy'?", 12, "http.pacing.polcy",
             cart("  retry: {attempts: 3", PACING.format("{type: ratelimit_fields, polcy: burst}"))),
    SpecCase("retry-max-throttle-wait", "expected a number", 12, "http.retry.max_throttle_wait",
             cart("retry: {attempts: 3,", "retry: {max_throttle_wait: soon, attempts: 3,")),
    # golden examples
    SpecCase("example-diff", '-    "order_number": "1008"', 40, "examples[0]",
             cart('order_number: "1007"', 'order_number: "1008"')),
    SpecCase("example-invalid-record", "is not a valid order", 40, "examples[0]",
             cart("qty: 2}", "qty: 0}")),
    # integrations
    SpecCase("literal-secret", "secret 'api_key' is written literally", 5,
             "source.config.api_key", integration('"${env:SHOP_KEY}"', "sk_live_123")),
    SpecCase("bad-reference", "malformed secret reference", 5, "source.config.api_key",
             integration('"${env:SHOP_KEY}"', '"${env:SHOP KEY}"')),
    SpecCase("unknown-connector", "unknown connector 'shopp'", 4, "source.connector",
             integration("connector: shop\n", "connector: shopp\n")),
    SpecCase("missing-config", "missing config key 'account'", 8, "destination.config",
             integration("{account: acme, ", "{")),
    SpecCase("config-type", "42 is not of type 'string'", 5, "source.config.site_url",
             integration('"https://shop.test"', '42')),
    SpecCase("flow-missing-operation", "needs operation 'list_shipments'", 12,
             "flows.shipments.enabled",
             integration("shipments: {enabled: false}", "shipments: {enabled: true}")),
    SpecCase("integration-key", "did you mean 'start_date'?", 9, "startdate",
             integration("start_date:", "startdate:")),
    SpecCase("order-filter", "invalid JMESPath", 14, "order_filters[0].when",
             integration("'test')\"}", "'test'\"}")),
    # time zones: literal names in JMESPath, Jinja and `time_zone`, config values, defaults
    SpecCase("zone-in-jmespath", "did you mean 'Europe/Paris'?", 29, f"{OP}.map.created_at",
             cart("created_at: created", "created_at: \"to_iso8601(created, 'Europe/Pariss')\"")),
    SpecCase("zone-in-template", "did you mean 'Europe/Paris'?", 17, f"{OP}.request.params.updated_after",
             cart('"{{ since }}"', "\"{{ since | to_local('Europe/Pariss') }}\"")),
    SpecCase("operation-time-zone", "did you mean 'America/New_York'?", 25, f"{OP}.time_zone",
             cart("    watermark: updated\n", "    watermark: updated\n    time_zone: America/NewYork\n")),
    SpecCase("operation-time-zone-context", "unknown template variable 'since'", 25, f"{OP}.time_zone",
             cart("    watermark: updated\n", "    watermark: updated\n    time_zone: \"{{ since }}\"\n")),
    SpecCase("zone-config-default", "did you mean 'Asia/Tokyo'?", 9, "config.properties.time_zone.default",
             wms("default: UTC}", "default: Asia/Tokio}")),
    SpecCase("zone-config-value", "did you mean 'Asia/Tokyo'?", 8, "destination.config.time_zone",
             integration("{account: acme, ", "{account: acme, time_zone: asia/tokio, ")),
    # function arity
    SpecCase("function-arity", "subtract() takes 2 arguments, got 1", 28, f"{OP}.map.order_number",
             cart("order_number: to_string(number)", "order_number: to_string(subtract(number))")),
    # OAuth2 token placement, body and token URL (http.auth)
    SpecCase("place-value-variable", "did you mean 'token'?", 17, "http.auth.place.value",
             oauth_cart('value: "{{ token }}"', 'value: "{{ tokn }}"')),
    SpecCase("token-outside-place", "unknown template variable 'token'", 14, "http.auth.client_id",
             oauth_cart('client_id: "{{ config.api_key }}"', 'client_id: "{{ token }}"')),
    SpecCase("place-header-and-query", "'header' and 'query' cannot be given together", 17,
             "http.auth.place", oauth_cart("{header: X-Access-Token,", "{header: X-Access-Token, query: t,")),
    SpecCase("place-neither", "missing a required key: 'header' or 'query'", 17, "http.auth.place",
             oauth_cart("{header: X-Access-Token, value:", "{value:")),
    SpecCase("token-body", "one of: 'form', 'json'", 16, "http.auth.token_body",
             oauth_cart("token_body: json", "token_body: xml")),
    SpecCase("token-url-http", "is not https", 14, "http.auth.token_url",
             oauth_wms("https://login.wms.test/token", "http://login.wms.test/token")),
    SpecCase("token-url-foreign-host", "neither the base_url host and port nor in token_hosts", 14,
             "http.auth.token_url", oauth_wms("[login.wms.test]", "[other.wms.test]")),
    SpecCase("token-url-other-port", "login.wms.test:8443 is neither", 14, "http.auth.token_url",
             oauth_wms("https://login.wms.test/token", "https://login.wms.test:8443/token")),
    SpecCase("token-hosts-url", "does not match", 15, "http.auth.token_hosts[1]",
             oauth_wms("[login.wms.test]", "[login.wms.test, 'https://login.wms.test']")),
]


#: A multi-step create_shipment with an idempotency key on its first step, and golden cases for
#: a step's request, the key, and what `verify` finds.
MULTISTEP_CART = cart(WRITE_OP, STEPS.replace(
    "        capture: {note_id: {path: id}}\n",
    "        capture: {note_id: {path: id}}\n        idempotency_key: \"{{ order.key }}-{{ package.tracking_number }}\"\n")
).replace("examples:\n", """examples:
  - name: the second step sees the first one's capture
    operation: create_shipment
    step: complete
    input: {order: {order_id: "7"}, steps: {note: {id: "90", note_id: 90}}}
    expect:
      request: {method: PUT, path: /orders/7, json: {status: done, note: 90}}
  - name: the note's idempotency key
    operation: create_shipment
    input: {order: {key: "7", order_id: "7"}, package: {tracking_number: 1Z1}}
    expect: {idempotency_key: 7-1Z1}
  - name: a note whose answer was lost is found among the order's notes
    operation: create_shipment
    step: note
    input: {order: {order_id: "7"}, package: {tracking_number: 1Z1}}
    response: {body: [{id: 90, note: "Shipped: 1Z1"}, {id: 89, note: "Paid"}]}
    expect: {resolved: {done: true}}
""")
