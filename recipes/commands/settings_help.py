"""Commands whose ``--help`` ends with every ``key=value`` setting they take.

The list is built only when help is asked for: building the align settings imports TRL, which the
command line must not pay for on every start.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from typer.core import TyperCommand


def settings_help_command(listing: Callable[[], str]) -> type[TyperCommand]:
    """A typer command class whose help ends with ``listing()`` (one setting a line)."""

    class SettingsHelpCommand(TyperCommand):
        def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            from rich.markup import escape

            lines = listing().splitlines()
            self.epilog = "\n\n".join(
                ["Settings, as key=value (name = default (bounds): help):", *(escape(line) for line in lines)]
            )
            super().format_help(ctx, formatter)

    return SettingsHelpCommand
