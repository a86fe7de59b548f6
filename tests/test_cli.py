"""The `syncengine` command line, run in-process through `run(args, stdout, stderr)`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import cli
from engine.cli import run
from engine.specs import lint_paths
from tests.lint_cases import CART


def call(*args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(list(args), stdout, stderr)
    assert "Traceback" not in stdout.getvalue() + stderr.getvalue()
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(CART.replace("param: page", "parm: page"))
    return path


def test_lint_clean_exits_zero(tmp_path: Path) -> None:
    """A clean spec: exit 0 and a one-line summary."""
    (tmp_path / "shop.yaml").write_text(CART)
    code, out, _ = call("lint", str(tmp_path))
    assert code == 0 and out.startswith("ok: no problems")


def test_lint_text_format(broken: Path) -> None:
    """A finding prints as `file:line:col: error: message`, then at/expected/hint lines."""
    code, out, _ = call("lint", str(broken))
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == f"{broken}:20:7: error: unknown key 'parm'"
    assert lines[1] == "  at: operations.list_orders.paginate.parm"
    assert lines[2].startswith("  expected: one of: 'type', 'param'")
    assert lines[3] == "  hint: did you mean 'param'?"
    assert lines[-1] == "1 problem(s) in 1 file(s)"


def test_lint_json_format(broken: Path) -> None:
    """`--format json` prints a list of finding objects."""
    code, out, _ = call("lint", "--format", "json", str(broken))
    findings = json.loads(out)
    assert code == 1 and len(findings) == 1
    assert findings[0]["line"] == 20 and findings[0]["hint"] == "did you mean 'param'?"
    assert set(findings[0]) == {"file", "line", "column", "path", "message", "expected",
                                "hint", "severity"}


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    """A path that does not exist exits 2 with one error line."""
    code, out, err = call("lint", str(tmp_path / "nope.yaml"))
    assert code == 2 and out == "" and "no such file or directory" in err


def test_usage_errors_exit_two() -> None:
    """No subcommand, an unknown one, no lint path, a bad option value: argparse's usage error, exit 2."""
    for args in ([], ["frobnicate"], ["lint"], ["lint", "--format", "xml", "x"], ["run", "--workers", "0"],
                 ["run", "--workers", "two"], ["status", "--limit", "-1"], ["status", "--limit", "x"],
                 ["run", "--grace", "-1"], ["run", "--grace", "nan"], ["run", "--grace", "inf"]):
        code, _, err = call(*args)
        assert code == 2 and "usage:" in err


def test_help_goes_to_stdout() -> None:
    """`--help` lists the subcommands on stdout and exits 0."""
    code, out, _ = call("--help")
    assert code == 0 and "lint" in out and "schema" in out


def test_schema_prints_json_schema() -> None:
    """`schema` prints the connector schema by default; `schema integration` the other."""
    code, out, _ = call("schema")
    assert code == 0 and json.loads(out)["title"] == "syncengine connector spec"
    code, out, _ = call("schema", "integration")
    assert code == 0 and "source" in json.loads(out)["properties"]


def test_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bug inside a command becomes one error line and exit 2, never a traceback."""
    def explode(paths: object, **options: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(cli, "lint_paths", explode)
    code, out, err = call("lint", str(tmp_path))
    assert code == 2 and err == "syncengine lint: internal error: KeyError: 'boom'\n"


def test_main_uses_sys_argv(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`main(argv)` is the console script: it returns the exit code."""
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "object"


def test_subcommands_come_from_one_table() -> None:
    """`lint` and `schema` are entries of `COMMANDS`, and every name appears once."""
    names = [command.name for command in cli.COMMANDS]
    assert names[:2] == ["lint", "schema"] and len(set(names)) == len(names)


def test_verbose_shows_why_paging_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-v routes the engine's INFO log lines, logged while the command runs, to its stderr;
    without -v they are not shown."""
    import logging

    def linting(paths, documents):
        logging.getLogger("syncengine.http").info("paging stopped: empty page")
        return lint_paths(paths, documents=documents)

    monkeypatch.setattr(cli, "lint_paths", linting)
    (tmp_path / "shop.yaml").write_text(CART)
    for flags, shown in ((["-v"], True), ([], False)):
        stdout, stderr = io.StringIO(), io.StringIO()
        assert run([*flags, "lint", str(tmp_path)], stdout, stderr) in (0, 1)
        assert ("paging stopped: empty page" in stderr.getvalue()) is shown
    assert logging.getLogger("syncengine").handlers == []        # the command's handler left with it
