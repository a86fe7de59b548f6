"""The `syncengine` command (also `python -m engine`).

Subcommands live in `COMMANDS`: a name, a function that adds its arguments to a parser, and a
handler `(args, stdout, stderr) -> exit code`. Adding `run`, `demo`, `status`, `retry` or
`reset` is one `Command(...)` entry; nothing else here changes.

Exit codes: 0 success (lint: no errors; warnings are printed), 1 findings, 2 usage error or
unexpected failure. The command never shows a traceback: an unexpected exception becomes one
error line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from engine import SCHEMAS, __version__, arguments, logs
from engine.errors import SyncEngineError
from engine.http import everywhere, forget_secrets
from engine.specs import Finding, example_refreshes, lint_paths, load_paths, write_guarantees

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: how to parse its arguments and what to do."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler


class UsageError(Exception):
    """A command line that argparse accepted but that cannot be run (exit 2)."""


def _lint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="spec files or directories (walked recursively)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--update-examples", action="store_true",
                        help="first write each golden example's `expect: {file: ...}` that differs from what "
                             "the case gives now (or is missing), showing the diff; then lint")


def lint_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Lint specs; exit 0 when clean (warnings alone included), 1 with an error."""
    missing = [path for path in args.paths if not Path(path).exists()]
    if missing:
        raise UsageError("no such file or directory: " + ", ".join(missing))
    if args.update_examples:
        update_examples(args.paths, stderr if args.format == "json" else stdout)
    documents: list = []
    findings = lint_paths(args.paths, documents=documents)
    if not documents and not findings:
        raise UsageError(f"no spec files (*.yaml, *.yml) in {', '.join(args.paths)}")
    if args.format == "json":
        json.dump([finding.to_json() for finding in findings], stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.writelines(format_finding(finding) for finding in findings)
        stdout.write(summary(findings, args.paths) + "\n")
        lines = write_guarantees(documents, findings)
        if lines:
            stdout.write("guarantees when an answer is lost:\n" + "".join(f"  {line}\n" for line in lines))
    return 1 if any(finding.severity == "error" for finding in findings) else 0


def update_examples(paths: Sequence[str], out: TextIO) -> None:
    """Show the diff of each golden `expect` file whose case gives other records now, then
    write the file (only inside the spec's tree; see `writable_data_file`)."""
    documents, _ = load_paths(paths)
    written = 0
    for refresh in example_refreshes(documents):
        out.write(f"updating {refresh.path} ({refresh.label}):\n{refresh.diff}\n")
        refresh.write()
        written += 1
    out.write(f"updated {written} example file(s)\n" if written else "examples: every expect file is up to date\n")


def format_finding(finding: Finding) -> str:
    """`file:line:col: error: message`, then indented `at:`, `expected:` and `hint:` lines."""
    head, *rest = finding.message.splitlines() or [""]
    lines = [f"{finding.file}:{finding.line}:{finding.column}: {finding.severity}: {head}"]
    lines += [f"    {line}" for line in rest]
    if finding.path:
        lines.append(f"  at: {finding.path}")
    if finding.expected:
        lines.append(f"  expected: {finding.expected}")
    if finding.hint:
        lines.append(f"  hint: {finding.hint}")
    return "\n".join(lines) + "\n"


def summary(findings: Sequence[Finding], paths: Sequence[str]) -> str:
    warnings = sum(finding.severity == "warning" for finding in findings)
    noted = f" ({warnings} warning(s))" if warnings else ""
    if len(findings) == warnings:
        return f"ok: no problems in {', '.join(paths)}{noted}"
    files = len({finding.file for finding in findings if finding.severity != "warning"})
    return f"{len(findings) - warnings} problem(s) in {files} file(s){noted}"


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", choices=("connector", "integration"),
                        default="connector")


def schema_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Print the JSON Schema of a spec kind, for editors (yaml-language-server)."""
    stdout.write((SCHEMAS / f"{args.kind}.schema.json").read_text(encoding="utf-8"))
    return 0


def _later(name: str, module: str = "engine.commands") -> Handler:
    """The handler `name` of `module`, imported when it runs: `lint` and `schema` never load the
    HTTP stack, the flows or the ledger, and only the cluster's commands load Celery."""

    def handler(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
        return getattr(importlib.import_module(module), name)(args, stdout, stderr)

    handler.__name__ = name
    return handler


def _demo_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """The demo lives with the sample servers it drives (samples/demo.py), not in the engine."""
    from samples.demo import demo_command

    return demo_command(args, stdout, stderr)


#: The subcommands, in the order `--help` lists them. Add new ones here.
COMMANDS: tuple[Command, ...] = (
    Command("lint", "check connector and integration specs", _lint_arguments, lint_command),
    Command("schema", "print the JSON Schema of a spec kind", _schema_arguments,
            schema_command),
    Command("run", "run the enabled flows of every integration once", arguments.run_arguments,
            _later("run_command")),
    Command("demo", "run the sample integrations against sample servers on 127.0.0.1",
            arguments.demo_arguments, _demo_command),
    Command("status", "ledger counts, last runs, failed/quarantined/held/unresolved items; exit code alerts",
            arguments.status_arguments, _later("status_command")),
    Command("retry", "re-process errored, quarantined and held orders (e.g. after a fix)",
            arguments.retry_arguments, _later("retry_command")),
    Command("reset", "re-pull orders since a time (delivered orders still block duplicates)",
            arguments.reset_arguments, _later("reset_command")),
    Command("release", "send held orders on despite their hold (recorded with who and when)",
            arguments.release_arguments, _later("release_command")),
    Command("pause", "stop scheduled runs of an integration (serve, run --every) until resumed",
            arguments.pause_arguments, _later("pause_command")),
    Command("resume", "resume the scheduled runs of a paused integration",
            arguments.pause_arguments, _later("pause_command")),
    Command("serve", "run the schedules and serve the web console, /metrics and health checks",
            arguments.serve_arguments, _later("serve_command", "engine.serve.service")),
    Command("worker", "run integration x flow jobs from a Celery broker (scale-out; shared PostgreSQL ledger)",
            arguments.worker_arguments, _later("worker_command", "engine.cluster")),
    Command("scheduler", "enqueue every enabled flow of every integration on its period (Celery beat)",
            arguments.scheduler_arguments, _later("scheduler_command", "engine.cluster")),
    Command("enqueue", "send jobs to the workers now (every enabled flow, or --integration/--flow)",
            arguments.enqueue_arguments, _later("enqueue_command", "engine.cluster")),
    Command("user", "add or change a console user (users file with salted password hashes)",
            arguments.user_arguments, _later("user_command", "engine.serve.access")),
)


def _parser_class(stdout: TextIO, stderr: TextIO) -> type[argparse.ArgumentParser]:
    """argparse writing help to `stdout` and errors to `stderr` (the streams `run` was given)."""

    class Parser(argparse.ArgumentParser):
        def _print_message(self, message: str, file: TextIO | None = None) -> None:
            if message:
                (stdout if file is sys.stdout else stderr).write(message)

    return Parser


def build_parser(stdout: TextIO, stderr: TextIO) -> argparse.ArgumentParser:
    """The argument parser with every subcommand of `COMMANDS`."""
    parser_class = _parser_class(stdout, stderr)
    parser = parser_class(prog="syncengine", description="Declarative order sync engine.")
    parser.add_argument("--version", action="version", version=f"syncengine {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more to stderr: -v why paging stopped and retries, -vv everything")
    parser.add_argument("--log-format", choices=logs.FORMATS, default="text",
                        help="log lines on stderr as dated text (default) or one JSON object per line "
                             "(time, level, logger, message, integration, flow)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=parser_class)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(sub)
        sub.set_defaults(handler=command.handler)
    return parser


def run(args: list[str], stdout: TextIO, stderr: TextIO) -> int:
    """Run one command line; returns the exit code. Never raises, never shows a traceback.
    Whatever it writes has every secret the run resolved masked (`Masked`)."""
    forget_secrets()                    # one command, one set of secrets (tests run many)
    stdout, stderr = Masked(stdout), Masked(stderr)
    if logging.lastResort is not None and logs.mask_record not in logging.lastResort.filters:
        logging.lastResort.addFilter(logs.mask_record)
    try:
        namespace = build_parser(stdout, stderr).parse_args(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    handler = logs.configure(namespace.verbose, stderr, namespace.log_format)
    try:
        return _handle(namespace, stdout, stderr)
    finally:
        logs.unconfigure(handler)


def _handle(namespace: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    try:
        return namespace.handler(namespace, stdout, stderr)
    except (UsageError, SyncEngineError) as exc:
        stderr.write(f"syncengine {namespace.command}: error: {exc}\n")
        return 2
    except BrokenPipeError:        # `syncengine status | head`: the reader has all it wanted
        return 141                 # what a shell reports for a command ended by SIGPIPE
    except KeyboardInterrupt:      # Ctrl-C before a run installed its own handler (loading specs)
        stderr.write(f"syncengine {namespace.command}: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any bug into exit 2
        stderr.write(f"syncengine {namespace.command}: internal error: "
                     f"{type(exc).__name__}: {exc}\n")
        return 2


class Masked:
    """A text stream whose writes have every secret this process resolved masked, in every
    spelling (`engine.http.everywhere`): the last line of defence on the way out.

    While a progress display owns the terminal, `divert` takes the masked text instead (it
    prints it above the display's rows); `raw` is the stream itself, for the display."""

    divert: Callable[[str], None] | None = None

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def raw(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        masked = everywhere().mask(text)
        if self.divert is not None:
            self.divert(masked)
        else:
            self._stream.write(masked)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: `syncengine ...`."""
    code = run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)
    if code == 141:
        # stdout's reader is gone: flushing it again at exit would print "Exception ignored"
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code

