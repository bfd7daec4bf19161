"""`imagepref run RECIPE.yaml key.path=value ...` and `imagepref recipes list|show`."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepref.recipes.config import RECIPES_DIR, STAGES, field_paths, shipped_recipes

recipes_app = typer.Typer(no_args_is_help=True, help="The shipped recipes and every recipe key.")


def _run_help() -> str:
    shipped = "\n".join(f"  {path.relative_to(RECIPES_DIR.parent)}  {text}" for path, text in shipped_recipes())
    return (
        "Run a recipe's stages in its run folder; finished stages whose inputs did not change are skipped, and a stage "
        "killed midway resumes from its own checkpoint.\n\n"
        f"Stages: {', '.join(STAGES)} (generate, label, reward and align repeat for each round).\n\n"
        f"Shipped recipes:\n\n{shipped}\n\n"
        "Overrides: key.path=value, for example rounds=2 label.annotators=3 align.methods=\\[dpo]; "
        "`imagepref recipes show` lists every key."
    )


def register(app: typer.Typer) -> None:
    """Add the recipe commands to the root app."""

    @app.command("run", help=_run_help(), context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
    def run_command(
        context: typer.Context,
        recipe: Path = typer.Argument(..., help="Recipe YAML file (see `imagepref recipes list`)."),
        from_stage: str | None = typer.Option(
            None,
            "--from",
            help="Restart from this stage (a kind like align, or a "
            "key like r2/generate) even when its inputs did not change.",
        ),
        force: bool = typer.Option(False, "--force", help="Take over a run folder made by another recipe."),
        continue_labeling: bool = typer.Option(
            False,
            "--continue",
            help="Go on with the labels people gave so far "
            "(tells a runner waiting for labels to continue, or continues the run).",
        ),
    ) -> None:
        from imagepref.recipes.config import load_recipe
        from imagepref.recipes.loop import run

        overrides = list(context.args)
        options = [item for item in overrides if item.startswith("-")]
        if options:
            from imagepref.errors import BadInputError

            raise BadInputError(f"unknown option {options[0]}; see imagepref run --help")
        run(
            load_recipe(recipe, overrides),
            from_stage=from_stage,
            force=force,
            continue_labeling=continue_labeling,
            echo=typer.echo,
        )

    app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def list_recipes() -> None:
    """The shipped recipes with their descriptions."""
    for path, text in shipped_recipes():
        typer.echo(f"{path.relative_to(RECIPES_DIR.parent)}  {text}")


@recipes_app.command("show")
def show_recipe(
    recipe: Path | None = typer.Argument(None, help="A recipe file: print it resolved (defaults filled in)."),
    overrides: list[str] | None = typer.Argument(None, help="key.path=value overrides."),
) -> None:
    """Every recipe key with its help text, or a recipe resolved with its overrides."""
    if recipe is None:
        for key, text in field_paths().items():
            typer.echo(f"{key:28} {text}")
        return
    import yaml

    from imagepref.recipes.config import load_recipe

    typer.echo(yaml.safe_dump(load_recipe(recipe, list(overrides or [])).model_dump(mode="json"), sort_keys=False))
