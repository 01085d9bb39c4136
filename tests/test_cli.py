"""The command line, run as a user runs it: the installed console script in a subprocess
(in this process only where nothing but argument and config checking runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, MakeConfig, item, rss

from aggregator.cli import cli


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's config.yaml and bundled examples."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_check_config_ok(project: Path) -> None:
    result = run("check-config", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "config.yaml: OK (5 sources, 3 enabled)" in result.stdout


def test_poll_with_the_default_config_writes_articles(project: Path) -> None:
    result = run("poll", "--workers", "2", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "3 sources, 0 failed, 0 not modified, 0 paused; 5 new, 0 updated, 0 unchanged"
        in result.stdout
    )
    posts = project / "site" / "source" / "_posts"
    assert len(list(posts.rglob("*.md"))) == 5
    assert (project / "data" / "aggregator.sqlite").is_file()
    again = run("poll", cwd=project)
    assert (
        "3 sources, 0 failed, 3 not modified, 0 paused; 0 new, 0 updated, 0 unchanged"
        in again.stdout
    )


def test_poll_one_source_verbosely(project: Path) -> None:
    result = run("poll", "-v", "--source", "example-blog", cwd=project)  # -v after the command
    assert result.returncode == 0, result.stderr
    assert "1 sources, 0 failed, 0 not modified, 0 paused; 2 new" in result.stdout
    assert "poll source=example-blog status=ok" in result.stderr  # one line per source
    missing = run("poll", "--source", "nope", cwd=project)
    assert missing.returncode == 2
    assert "no source named 'nope'" in missing.stderr


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_takes_verbose(name: str) -> None:
    command = cli.commands[name]
    with pytest.raises(click.exceptions.Exit) as done:  # --help: parsed, then exits
        command.make_context(name, ["-v", "--help"])
    assert done.value.exit_code == 0


def test_a_failing_source_sets_the_exit_status(tmp_path: Path, make_config: MakeConfig) -> None:
    good = tmp_path / "good.xml"
    good.write_text(rss(item("a", "Fine")), encoding="utf-8")
    make_config(
        [
            {"url": str(good), "categories": ["A"]},
            {"url": str(tmp_path / "missing.xml"), "categories": ["B"]},
        ]
    )
    result = run("poll", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAILED: " in result.stdout
    assert "cannot read file" in result.stdout
    assert "2 sources, 1 failed, 0 not modified, 0 paused; 1 new" in result.stdout


@pytest.mark.parametrize("command", ["check-config", "poll", "rebuild", "prune"])
def test_every_command_refuses_an_invalid_config(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("settings:\n  postsdir: x\nsources:\n  - categories: [a]\n", encoding="utf-8")
    # In this process: the refusal happens before any command's work (tested above
    # through the console script) starts.
    result = CliRunner().invoke(cli, [command, "--config", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: 2 problems" in result.stderr
    assert f"{bad}:2: settings.postsdir: unknown key" in result.stderr
    assert f"{bad}:4: sources[0].url: required key is missing" in result.stderr
    assert not (tmp_path / "data").exists()


def test_rebuild_and_prune(project: Path) -> None:
    assert run("poll", cwd=project).returncode == 0
    rebuilt = run("rebuild", cwd=project)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "0 updated, 5 unchanged" in rebuilt.stdout
    config = project / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("keep_max: null", "keep_max: 1"),
        encoding="utf-8",
    )
    pruned = run("prune", cwd=project)
    assert pruned.returncode == 0, pruned.stderr
    assert "2 entries pruned" in pruned.stdout
    assert len(list((project / "site").rglob("*.md"))) == 3


def test_version_and_help() -> None:
    runner = CliRunner()  # in this process: both only print and exit
    assert runner.invoke(cli, ["--version"]).stdout.startswith("aggregator, version ")
    help_text = runner.invoke(cli, ["--help"]).stdout
    for command in ("check-config", "poll", "rebuild", "prune"):
        assert command in help_text
