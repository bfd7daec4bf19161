"""`imagepref eval`: score checkpoints and write a report."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the eval command to the root app."""
