"""Installing Label Studio says so and shows pip's progress: the real install path, run on a small
stand-in wheel named label-studio 1.23.99 (pip reads only a local folder), and pip's own lines."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from imagepref.labeling.server import PipProgress, ServerError, install_label_studio, pip_install


def stand_in_wheel(folder: Path, name: str = "label_studio", version: str = "1.23.99") -> Path:
    """A minimal wheel with a ``label-studio`` console script (what ``installed_version`` looks for)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "def main():\n    print('stand-in')\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[console_scripts]\nlabel-studio = {name}:main\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.mark.slow
def test_an_install_announces_itself_reports_progress_and_finishes(tmp_path, monkeypatch):
    stand_in_wheel(tmp_path / "wheels")
    monkeypatch.setenv("IMAGEPREF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    lines: list[str] = []
    assert install_label_studio(report=lines.append) == "1.23.99"
    assert (
        lines[0]
        == f"installing Label Studio 1.23 (once, about 2 minutes) into {tmp_path / 'home' / 'label-studio-venv'}"
    )
    assert "  installing 1 package" in lines
    assert lines[-1].startswith("Label Studio 1.23.99 installed in ") and lines[-1].endswith(" s")
    # Installed once: the next call is quiet and quick.
    again: list[str] = []
    assert install_label_studio(report=again.append) == "1.23.99" and again == []


def test_a_failed_install_quotes_pips_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    pip_error = r"\(ERROR: No matching distribution found for no-such-package-here\)"
    with pytest.raises(ServerError, match=r"installing no-such-package-here .*failed " + pip_error):
        pip_install(Path(sys.executable), ["no-such-package-here", "--target", str(tmp_path / "target")], print)


def test_pips_output_becomes_a_few_progress_lines():
    output = """Looking in indexes: https://example.invalid/simple
Collecting label-studio==1.23.*
  Downloading label_studio-1.23.0-py3-none-any.whl.metadata (6.0 kB)
Collecting Django<5.2.0,>=5.1.8 (from label-studio==1.23.*)
  Downloading django-5.1.9-py3-none-any.whl (8.3 MB)
Processing /opt/files/pygments-2.21.0-py3-none-any.whl (from rich==13.*)
Collecting boto3<2.0.0,>=1.28.58 (from label-studio==1.23.*)
  Downloading label_studio-1.23.0-py3-none-any.whl (80.3 MB)
Installing collected packages: pygments, django, boto3, label-studio
Successfully installed boto3-1.28.60 django-5.1.9 label-studio-1.23.0 pygments-2.21.0
"""
    progress = PipProgress(every=2)
    messages = [m for m in map(progress.feed, output.splitlines()) if m]
    assert messages == [
        "  2 packages collected (latest: Django)",
        "  4 packages collected (latest: boto3)",
        "  downloading label_studio (80.3 MB)",
        "  installing 4 packages",
    ]
