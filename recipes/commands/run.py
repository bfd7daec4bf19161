"""`imagepref run RECIPE.yaml` and `imagepref recipes list`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the recipe commands to the root app."""
