"""`imagepref pretrain` and `imagepref generate`: the generator's own commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add pretrain and generate to the root app."""
