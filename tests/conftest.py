"""Checks shared by every test folder.

Test modules cannot import a conftest under ``--import-mode=importlib``, so shared checks come as
fixtures that return the function.
"""

from __future__ import annotations

import subprocess

import pytest

from imagepref.known_warnings import silence_known_warnings


def pytest_configure(config):
    # The tests call the library as the command line does, so the third-party warnings the
    # command line silences (nothing wrong, see imagepref.known_warnings) stay out of the summary;
    # tests/imagepref/test_known_warnings.py checks that they are still raised upstream.
    silence_known_warnings()


def assert_one_line_error(outcome, *fragments: str) -> str:
    """Bad input ended the command the way the command line promises: exit status 2, and stderr
    is one line, ``error: ...``, holding every fragment; no traceback. ``outcome`` is a finished
    ``subprocess.CompletedProcess`` or the ``cli`` fixture's ``(status, stdout, stderr)``.
    Returns the line."""
    if isinstance(outcome, subprocess.CompletedProcess):
        status, stdout, stderr = outcome.returncode, outcome.stdout, outcome.stderr
    else:
        status, stdout, stderr = outcome
    assert status == 2, (status, (stdout or "")[-2000:], stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def one_line_error():
    """``assert_one_line_error`` as a fixture: ``one_line_error(outcome, *fragments)``."""
    return assert_one_line_error
