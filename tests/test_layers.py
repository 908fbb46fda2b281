"""The layer rules of DESIGN.md, checked on the source: no import from a lower layer to a higher
one, the agent's runner and command loop do not import each other, services know no HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import e3backup

SRC = Path(e3backup.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of the e3backup modules (and third-party packages) a file imports."""
    package = ".".join(("e3backup", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def _files(sub: str) -> list[Path]:
    return sorted((SRC / sub).rglob("*.py"))


def test_lower_layers_do_not_import_higher_ones() -> None:
    higher = {
        "repo": ("e3backup.engines", "e3backup.restore", "e3backup.agent", "e3backup.server", "e3backup.cli"),
        "store": ("e3backup.repo", "e3backup.engines", "e3backup.agent", "e3backup.server", "e3backup.cli"),
        "engines": ("e3backup.agent", "e3backup.server", "e3backup.cli"),
        "restore": ("e3backup.agent", "e3backup.server", "e3backup.cli"),
        "proof": ("e3backup.agent", "e3backup.server", "e3backup.cli", "e3backup.engines"),
        "api": ("e3backup.agent", "e3backup.server", "e3backup.cli", "e3backup.engines", "sqlalchemy", "fastapi"),
        "agent": ("e3backup.server", "e3backup.cli"),
        "recovery": ("e3backup.server", "e3backup.cli"),
        "gateway": ("e3backup.agent", "e3backup.cli", "e3backup.recovery"),
        "instant": ("e3backup.agent", "e3backup.server", "e3backup.cli"),
        "platform": ("e3backup.repo", "e3backup.store", "e3backup.sources", "e3backup.engines", "e3backup.restore",
                     "e3backup.agent", "e3backup.server", "e3backup.cli", "e3backup.api"),
    }
    wrong = [
        f"{path.relative_to(SRC)} imports {name}"
        for sub, banned in higher.items()
        for path in _files(sub)
        for name in _imports(path)
        if name.startswith(banned)
    ]
    for path in (SRC / "contract.py", SRC / "maintenance.py", SRC / "progress.py"):
        wrong += [f"{path.name} imports {n}" for n in _imports(path)
                  if n.startswith(("e3backup.agent", "e3backup.server", "e3backup.cli", "e3backup.engines"))]
    assert wrong == []


def test_the_agent_runner_and_command_loop_do_not_import_each_other() -> None:
    assert "e3backup.agent.runner" not in _imports(SRC / "agent" / "commands.py")
    assert "e3backup.agent.commands" not in _imports(SRC / "agent" / "executor.py")
    assert "e3backup.agent.runner" not in _imports(SRC / "agent" / "executor.py")


def test_server_services_raise_domain_errors_not_http() -> None:
    wrong = [f"{p.name} imports {n}" for p in _files("server/services") for n in _imports(p)
             if n.startswith(("fastapi", "starlette"))]
    assert wrong == []
