"""The command line's arguments, apart from the commands: building the parser imports nothing
heavy, so `syncengine lint` starts without loading the HTTP stack, flows or ledger."""

from __future__ import annotations

import argparse
import os

from engine.specs.settings import FLOWS


def project_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connectors", default="connectors", metavar="DIR", help="connector specs (default: connectors)")
    parser.add_argument("--integrations", default="integrations", metavar="DIR",
                        help="integration specs (default: integrations)")
    parser.add_argument("--integration", metavar="NAME", help="only this integration")
    state_argument(parser)


def state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", "--state-dir", dest="state_dir", default=os.environ.get("SYNCENGINE_STATE") or "state",
                        metavar="DIR|URL", help="where the ledger lives: a directory, or a postgresql:// URL shared by "
                                                "every machine (default: $SYNCENGINE_STATE, else the directory state)")


def run_arguments(parser: argparse.ArgumentParser) -> None:
    project_arguments(parser)
    parser.add_argument("--flow", action="append", choices=FLOWS, help="only this flow (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and print the requests it would send (secrets redacted); write nothing")
    parser.add_argument("--workers", type=_positive, default=1, metavar="N",
                        help="split a large paged read over N processes (default: 1); the connectors' "
                             "concurrency and rate limits hold in total")
    parser.add_argument("--every", nargs="?", const="", metavar="DURATION",
                        help="keep running until SIGINT/SIGTERM: each flow on its integration's `every` "
                             "(orders 5m, shipments 15m, inventory 1h by default), or every DURATION (e.g. 1m)")
    parser.add_argument("--grace", type=_seconds, default=10.0, metavar="SECONDS",
                        help="on SIGINT/SIGTERM, stop reading and let sends in flight finish for up to this "
                             "long (default: 10); then they are cut off, which the next run reconciles. "
                             "A second signal cuts off at once")


def cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """What `worker`, `scheduler` and `enqueue` share: the project, the ledger and the broker."""
    project_arguments(parser)
    parser.add_argument("--broker", default=None, metavar="URL",
                        help="the Celery broker: redis://HOST:6379/0 or amqp://USER:PASSWORD@HOST:5672// "
                             "(default: $SYNCENGINE_BROKER)")
    parser.add_argument("--queue", default="syncengine", metavar="NAME",
                        help="the broker queue the jobs go through (default: syncengine)")


def worker_arguments(parser: argparse.ArgumentParser) -> None:
    cluster_arguments(parser)
    parser.add_argument("--concurrency", type=_positive, default=os.cpu_count() or 1, metavar="N",
                        help="jobs run at once, each in a process of its own (default: the number of cores)")
    parser.add_argument("--redeliver-after", type=_seconds, default=3600.0, metavar="SECONDS",
                        help="Redis broker: a job whose worker died is handed to another worker after this long "
                             "(the visibility timeout; default: 3600). Keep it above the longest run: a job "
                             "redelivered while its run is still going finds the run lock held and is skipped")
    parser.add_argument("--split", type=_positive, default=1, metavar="N",
                        help="deal a large paged read out to N jobs across the cluster (default: 1, no split); "
                             "the connectors' concurrency holds in total. Needs Redis (broker or --budget)")
    parser.add_argument("--max-jobs-per-process", type=_positive, default=None, metavar="N",
                        help="replace a pool process after N jobs (default: never)")
    parser.add_argument("--budget", metavar="URL", default=os.environ.get("SYNCENGINE_BUDGET"),
                        help="share each host's rate budget through this Redis (default: $SYNCENGINE_BUDGET, "
                             "else the broker when it is Redis)")


def scheduler_arguments(parser: argparse.ArgumentParser) -> None:
    cluster_arguments(parser)
    parser.add_argument("--flow", action="append", choices=FLOWS, help="only this flow (repeatable)")
    parser.add_argument("--every", metavar="DURATION",
                        help="every flow on this period (e.g. 1m) instead of the integrations' own `every`")
    parser.add_argument("--schedule-file", default="syncengine-schedule", metavar="PATH",
                        help="where the scheduler keeps when each job last ran, so that a restart keeps the "
                             "periods (default: ./syncengine-schedule)")


def enqueue_arguments(parser: argparse.ArgumentParser) -> None:
    cluster_arguments(parser)
    parser.add_argument("--flow", action="append", choices=FLOWS, help="only this flow (repeatable)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 86400:            # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 86400, got {text!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return int(text)


def status_arguments(parser: argparse.ArgumentParser) -> None:
    state_argument(parser)
    parser.add_argument("--integration", metavar="NAME", help="only this integration")
    parser.add_argument("--limit", type=_count, default=10, help="entries listed per status (default: 10)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default) or the JSON document described in docs/operations.md; "
                             "either way the exit code sums the alerts (0: all clear)")


def retry_arguments(parser: argparse.ArgumentParser) -> None:
    project_arguments(parser)
    parser.add_argument("--key", action="append", metavar="KEY",
                        help="only this order key (repeatable; needs --integration)")


def release_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connectors", default="connectors", metavar="DIR", help="connector specs (default: connectors)")
    parser.add_argument("--integrations", default="integrations", metavar="DIR",
                        help="integration specs (default: integrations)")
    parser.add_argument("--integration", metavar="NAME", required=True)
    state_argument(parser)
    parser.add_argument("--key", action="append", required=True, metavar="KEY",
                        help="the held order's key (repeatable)")


def pause_arguments(parser: argparse.ArgumentParser) -> None:
    state_argument(parser)
    parser.add_argument("--integration", metavar="NAME", required=True)


def reset_arguments(parser: argparse.ArgumentParser) -> None:
    state_argument(parser)
    parser.add_argument("--integration", metavar="NAME", required=True)
    parser.add_argument("--since", required=True, metavar="TIMESTAMP",
                        help="move the orders watermark back to this ISO-8601 time; delivered orders still block duplicates")


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", "--state-dir", dest="state_dir", metavar="DIR|URL",
                        help="keep the ledger here, a directory or a postgresql:// URL (default: a fresh temporary directory)")
    parser.add_argument("--serve", action="store_true",
                        help="then keep the sample servers running behind a live console (Ctrl-C stops)")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="with --serve: where the console listens (default: 127.0.0.1:8080)")


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    project_arguments(parser)
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where the console listens (default: 127.0.0.1:8080, loopback only)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow --listen on an address beyond loopback (put TLS in front of it)")
    parser.add_argument("--users", metavar="FILE", required=True,
                        help="console users and tokens (`syncengine user add` writes it)")
    parser.add_argument("--alerts", metavar="FILE", help="alert channels and rules (YAML; `lint` checks it)")
    parser.add_argument("--public-url", metavar="URL", help="the console's address in alert links "
                        "(default: http://HOST:PORT of --listen)")
    parser.add_argument("--secure-cookies", action="store_true",
                        help="mark the session cookie Secure (set it when TLS is in front; on by itself for https)")
    parser.add_argument("--every", metavar="DURATION",
                        help="run every flow every DURATION instead of each integration's own schedule")
    parser.add_argument("--no-schedule", action="store_true", help="serve the console only; run nothing on a schedule")
    parser.add_argument("--grace", type=_seconds, default=10.0, metavar="SECONDS",
                        help="on SIGINT/SIGTERM, let sends in flight finish for up to this long (default: 10)")


def user_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("add", "remove"), help="add (or change) a user, or remove one")
    parser.add_argument("name", help="the user's name (letters, digits, . _ - @)")
    parser.add_argument("--users", metavar="FILE", required=True, help="the users file (created if absent)")
    parser.add_argument("--role", choices=("operator", "read-only"), default="operator",
                        help="operator: may act; read-only: may look (default: operator)")
    parser.add_argument("--token", action="store_true",
                        help="make an API token (printed once) instead of asking for a password")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
