"""Rules the test suite keeps so that it fails only when the product is wrong.

Checked on the source of every test module: the classes of problem that once made the suite fail
on a healthy product (tokens that expire before the late tests use them) or pass on a broken one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
# Helpers that mint or fetch an access token (15 minutes of life).
TOKEN_MAKERS = {"bearer", "mint_token", "token_for", "auth_headers", "login", "log_in"}
WIDE_SCOPES = {"session", "module", "package", "class"}


def modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if p.name != "test_suite_hygiene.py")


def _called_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _module_level_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """Calls run at import time: in module statements, outside any function or class body
    (decorators and default values included, since they run at import too)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            roots: list[ast.AST] = list(stmt.decorator_list)
            if not isinstance(stmt, ast.ClassDef):
                roots += stmt.args.defaults + [d for d in stmt.args.kw_defaults if d is not None]
        else:
            roots = [stmt]
        for root in roots:
            yield from (n for n in ast.walk(root) if isinstance(n, ast.Call))


def _fixture_scope(decorator: ast.expr) -> str | None:
    if not isinstance(decorator, ast.Call):
        return None
    if not (isinstance(decorator.func, ast.Attribute) and decorator.func.attr == "fixture"):
        return None
    for kw in decorator.keywords:
        if kw.arg == "scope" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    return None


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_token_is_made_at_import_time(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    made = [
        f"line {call.lineno}: {_called_name(call)}()"
        for call in _module_level_calls(tree)
        if _called_name(call) in TOKEN_MAKERS
    ]
    assert not made, f"a token made at import time expires during a long run: {made}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_token_fixture_outlives_a_test(path: Path) -> None:
    """A fixture that holds a token for a module or the session hands out an expired one once
    the run is longer than the token's life; renew it per test instead (``token_for``)."""
    tree = ast.parse(path.read_text(), str(path))
    wide = [
        f"line {node.lineno}: {node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_fixture_scope(d) in WIDE_SCOPES for d in node.decorator_list)
        and ("token" in node.name.lstrip("_") or "headers" in node.name)
        and node.name != "_tokens"  # the renewing store behind token_for (tests/e2e/conftest.py)
    ]
    assert not wide, f"token fixtures wider than one test: {wide}"


def test_the_checks_see_what_they_look_for() -> None:
    """The two scans above find an import-time token and a session-wide token fixture."""
    source = (
        "import pytest\n"
        "H = bearer('Management')\n"
        "@pytest.fixture(scope='session')\n"
        "def admin_token():\n"
        "    return token_for('Management')\n"
    )
    tree = ast.parse(source)
    assert [_called_name(c) for c in _module_level_calls(tree)] == ["bearer", "fixture"]
    [fixture] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert _fixture_scope(fixture.decorator_list[0]) == "session"
