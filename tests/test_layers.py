"""Layers: the web app reads the store and never polls, so ``web/`` imports no poll module
(not even for type checking: what it needs of the service is a protocol of its own)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

WEB = ROOT / "aggregator" / "web"
POLL_MODULES = frozenset(
    f"aggregator.poll.{name}"
    for name in ("pipeline", "policy", "scheduler", "worker", "fetch", "ingest", "discovery")
)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) may import, wherever the import
    statement is: at the top, in a function, under ``if TYPE_CHECKING``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 packages
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # from pkg import mod
    return found


def poll_imports(source: str, package: str) -> set[str]:
    """The poll modules that ``source`` imports (or imports something from)."""
    return {
        poll
        for name in imported_modules(source, package)
        for poll in POLL_MODULES
        if name == poll or name.startswith(poll + ".")
    }


def web_modules() -> list[Path]:
    return sorted(WEB.rglob("*.py"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from aggregator.poll.pipeline import Poller", {"aggregator.poll.pipeline"}),
        ("import aggregator.poll.scheduler", {"aggregator.poll.scheduler"}),
        ("from aggregator.poll import policy", {"aggregator.poll.policy"}),
        ("from ..poll.worker import make_executor", {"aggregator.poll.worker"}),
        ("from ..poll import fetch", {"aggregator.poll.fetch"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from aggregator.poll.ingest import Ingest",
            {"aggregator.poll.ingest"},
        ),
        ("def f():\n    from aggregator.poll.pipeline import Poller", {"aggregator.poll.pipeline"}),
        ("from aggregator.store import Store\nfrom . import cache", set()),
        ("from aggregator.models import Status\nimport aggregator.policyx", set()),
    ],
)
def test_the_import_check_sees_every_form_of_import(source: str, expected: set[str]) -> None:
    assert poll_imports(source, "aggregator.web") == expected


@pytest.mark.parametrize("path", web_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_web_imports_no_poll_module(path: Path) -> None:
    package = ".".join(path.relative_to(ROOT).parent.parts)
    assert poll_imports(path.read_text(encoding="utf-8"), package) == set()


def test_importing_the_web_app_loads_no_poll_module() -> None:
    """Nor through the modules it imports (checked in a fresh interpreter)."""
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in web_modules()
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "aggregator.web.admin" in loaded  # the check ran on the app's views
    assert sorted(POLL_MODULES.intersection(loaded)) == []
