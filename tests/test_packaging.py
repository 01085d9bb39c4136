"""The wheel is what a non-editable `pip install .` installs: it must carry the templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


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
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "aggregator = aggregator.__main__:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
