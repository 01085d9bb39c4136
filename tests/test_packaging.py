"""The wheel is what a non-editable `pip install .` installs: it must carry the templates
and the schema's revisions."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

from aggregator.store import migrate


def test_wheel_ships_the_package_and_the_templates(tmp_path: Path) -> None:
    # --no-build-isolation: build with the hatchling installed by the test extras, offline.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("aggregator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").rglob("*") if p.is_file()
    }
    assert templates
    assert {f"aggregator/{t}" for t in templates} <= names
    assert "aggregator/cli.py" in names
    assert {"aggregator/web/static/app.css", "aggregator/web/static/app.js"} <= names
    migrations = ROOT / "aggregator" / "store" / "migrations"
    revisions = {
        p.relative_to(ROOT).as_posix()
        for p in migrations.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert (
        {
            "aggregator/store/migrations/env.py",
            "aggregator/store/migrations/script.py.mako",
            "aggregator/store/migrations/versions/r0001_baseline.py",
        }
        <= revisions
        <= names
    )
    # The unpacked wheel, away from the source tree, makes a new index from its revisions.
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import aggregator.store.migrate as m, sys; "
            "assert m.__file__.startswith(sys.argv[1]), m.__file__; "
            "print(m.upgrade_database(sys.argv[2]).after)",
            str(unpacked),
            str(tmp_path / "index.sqlite"),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PYTHONSAFEPATH": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"{migrate.HEAD}\n"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "aggregator = aggregator.__main__:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
