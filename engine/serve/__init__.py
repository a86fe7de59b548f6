"""`syncengine serve`: the schedules, a web console for operators, `/metrics`, health checks and
alerts, in one process. `service` runs it, `app` is the console (Starlette, Jinja pages),
`views` reads what the pages show, `actions` does what their buttons ask (through the same
functions as the CLI), `access` says who may, `metrics` and `alerts` tell the outside world."""
