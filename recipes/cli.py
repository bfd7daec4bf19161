"""The ``imagepref`` command line.

Each group of commands lives in its own module under ``recipes/commands`` so that the parts can
grow apart; this file only assembles them and turns user errors into one line and exit status 2.
Heavy imports (torch, transformers) happen inside the commands, so ``imagepref label ...`` stays
light.
"""

from __future__ import annotations

import os
import sys

# No run-time downloads: models load from local folders only. Quiet library chatter.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Spinning OpenMP threads waste a shared CPU: sampling 32 glyph images took 70 s with torch's 2
# threads on a 2-core machine running other jobs, and 2.9 s with passive waits. Set before torch
# is first imported (every command imports it lazily).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402
from typer._click import exceptions as click_errors  # noqa: E402  (typer's own copy of click)
from typer.core import TyperOption  # noqa: E402

from imagepref.errors import ImagePrefError  # noqa: E402
from imagepref.known_warnings import silence_known_warnings  # noqa: E402
from imagepref.recipes.commands import align, editing, evaluate, label, policy, reward, run


def _show_flags_without_a_type() -> None:
    """Typer 0.29's rich help writes ``<bool>`` after every flag (``--resume <bool>``), as if the
    flag took a value; a flag's help line shows no type, as click's own help does."""
    shown = TyperOption.display_type_rich
    if getattr(shown, "hides_flag_types", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.hides_flag_types = True
    TyperOption.display_type_rich = display_type_rich


_show_flags_without_a_type()

app = typer.Typer(
    name="imagepref",
    help="Align token-predicting image generators with human preferences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"imagepref {version('imagepref')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Align token-predicting image generators with human preferences."""


policy.register(app)
editing.register(app)
run.register(app)
app.add_typer(
    label.app, name="label", help="Label Studio: server, projects, push, pull, agreement, simulated annotators."
)
app.add_typer(reward.app, name="reward", help="Multi-head reward models: train, eval, score.")
app.add_typer(align.app, name="align", help="Move the generator toward preferences: dpo, grpo, ppo, merge.")
evaluate.register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; an ``ImagePrefError`` becomes one line on stderr and exit status 2."""
    silence_known_warnings()
    try:
        # Not standalone: click's usage errors come here and become one line like every other.
        status = app(args=argv, standalone_mode=False)
    except ImagePrefError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except click_errors.NoArgsIsHelpError as error:
        typer.echo(error.ctx.get_help(), err=True)
        sys.exit(error.exit_code)
    except click_errors.UsageError as error:
        command = error.ctx.command_path if error.ctx is not None else "imagepref"
        message = " ".join(error.format_message().split()).rstrip(".")
        print(f"error: {message}; see {command} --help", file=sys.stderr)
        sys.exit(error.exit_code)
    except click_errors.ClickException as error:
        print(f"error: {' '.join(error.format_message().split())}", file=sys.stderr)
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)  # typer.Exit(code) from a command


if __name__ == "__main__":
    main()
