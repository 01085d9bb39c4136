"""The README tells the truth about the commands and about what CI runs."""

from __future__ import annotations

import re

from conftest import ROOT

from aggregator.cli import cli

README = (ROOT / "README.md").read_text(encoding="utf-8")


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, re.S)


def test_ci_runs_the_readme_test_command_with_the_audited_lock() -> None:
    [test_command] = [b for b in sh_blocks() if "pytest" in b]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip("\n").splitlines()
    assert ci[-1] == test_command
    # What is tested is what .ci/audit audits: the lock constrains every install.
    assert "pip install -c requirements.lock " in test_command
    installs = [line for line in ci if "pip install" in line and "-e " in line]
    assert installs and all("-c requirements.lock" in line for line in installs)


def test_ci_type_checks_the_package_and_its_tests_as_the_readme_says() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "strict types over the package and its tests" in " ".join(README.split())
    assert any(line.startswith(".venv/bin/mypy aggregator tests") for line in ci)


def test_the_command_table_lists_every_command() -> None:
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `aggregator ([a-z][a-z-]*)", table, re.M))
    assert listed == set(cli.commands)
    assert "| `aggregator --version` |" in table


def test_architecture_and_layout_name_every_module_and_only_real_ones() -> None:
    # docs/ARCHITECTURE.md and the README's layout follow the package as it is.
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    package = ROOT / "aggregator"
    modules = {
        str(p.relative_to(package).with_suffix(""))
        for p in package.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
        and not p.parent.name.startswith("web")
        # Alembic's environment and revisions: named as the folder store/migrations/.
        and "migrations" not in p.parts
    }
    assert "`aggregator/store/migrations/versions/`" in architecture
    named = set(re.findall(r"`(?:aggregator/)?((?:content|poll|store)/[a-z_]+)\.py`", architecture))
    named |= set(re.findall(r"`([a-z_]+)\.py`", architecture))
    missing = {m for m in modules if m not in named and m.rsplit("/", 1)[-1] not in named}
    assert not missing, f"docs/ARCHITECTURE.md never names {sorted(missing)}"
    for path in re.findall(
        r"`((?:aggregator/)?(?:content|poll|store|web)/[a-z_]+\.py)`", architecture
    ):
        assert (package / path.removeprefix("aggregator/")).is_file(), path
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    for module in modules:
        assert f"`{module.rsplit('/', 1)[-1]}`" in layout, f"README's layout lacks {module}"
