"""`imagepref label ...`: the Label Studio server, the comparison project, push, pull, agreement,
annotator accounts and simulated annotators. Each command is a thin layer over `labeling`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field
from rich.console import Console

from imagepref.errors import BadInputError
from imagepref.recipes.config import LabelSection
from imagepref.settings import Seed, option_bounds

app = typer.Typer(no_args_is_help=True)
server_app = typer.Typer(no_args_is_help=True, help="Run the managed Label Studio: install, start, stop, status.")
app.add_typer(server_app, name="server")
console = Console()

StateDir = typer.Option(
    Path(".imagepref/label-studio"),
    "--state-dir",
    envvar="IMAGEPREF_LABEL_STATE",
    help="Folder of the managed server: data dir, 0600 secrets, pid, log.",
)
Url = typer.Option(
    None,
    "--url",
    help="An existing Label Studio deployment; then nothing is started and the token comes from --token-env.",
)
TokenEnv = typer.Option(
    "LABEL_STUDIO_API_KEY", "--token-env", help="Environment variable holding the API token for --url."
)
ConfigFile = typer.Option(None, "--config", help="Labeling config YAML (axes, overlap, instructions, gold, pairing).")
Title = typer.Option(None, "--title", help="Project title (overrides the config).")


def _labeling_config():
    # Imported when an option is checked: the labeling package is heavy to import for every command.
    from imagepref.labeling.config import LabelingConfig

    return LabelingConfig


def _connect(url: str | None, token_env: str, state_dir: Path, check: bool = True):
    from imagepref.labeling.connection import connect

    connection = connect(url, token_env, state_dir)
    if check:
        connection.check()
    return connection


def _config(config: Path | None, **overrides):
    from imagepref.labeling.config import LabelingConfig

    return LabelingConfig.load(config, **overrides)


@server_app.command("install")
def server_install(force: bool = typer.Option(False, help="Reinstall even when 1.23.x is there.")) -> None:
    """Create or refresh Label Studio's own virtual environment ($IMAGEPREF_HOME/label-studio-venv)."""
    from imagepref.labeling.server import install_label_studio, label_studio_venv

    version = install_label_studio(force=force)
    console.print(f"Label Studio {version} in {label_studio_venv()}")


@server_app.command("start")
def server_start(
    port: int = typer.Option(
        8080,
        help="Port on 127.0.0.1; a busy port is an error, never silently another.",
        callback=option_bounds(LabelSection, "port"),
    ),
    files_root: Path = typer.Option(
        Path("workspace"),
        "--files-root",
        help="Folder whose images the server may show; candidate sets must lie inside.",
    ),
    state_dir: Path = StateDir,
) -> None:
    """Start the managed Label Studio on 127.0.0.1 (installs it on first use) and wait until it is healthy."""
    from imagepref.labeling.server import StatePaths, start_server

    status = start_server(state_dir, port, files_root)
    console.print(
        f"Label Studio is running at {status.url} (pid {status.pid}); admin login and API token are in "
        f"{StatePaths(state_dir.resolve()).secrets_file} (0600)"
    )


@server_app.command("stop")
def server_stop(state_dir: Path = StateDir) -> None:
    """Stop the managed Label Studio."""
    from imagepref.labeling.server import stop_server

    console.print("stopped" if stop_server(state_dir) else "no managed Label Studio was running")


@server_app.command("status")
def server_status_command(url: str | None = Url, state_dir: Path = StateDir) -> None:
    """Say where the server is and whether it is healthy (exit status 1 when it is not)."""
    from imagepref.labeling.server import server_status

    status = server_status(state_dir, url)
    console.print(
        f"{status.url} {'healthy' if status.healthy else 'NOT healthy'}"
        f"{f' (managed, pid {status.pid})' if status.managed else ' (existing deployment)'}"
    )
    if not status.healthy:
        raise typer.Exit(1)


@app.command("create")
def create(
    config: Path | None = ConfigFile,
    title: str | None = Title,
    overlap: int | None = typer.Option(
        None, help="Annotators per task (default 2).", callback=option_bounds(_labeling_config, "overlap")
    ),
    instructions: Path | None = typer.Option(None, help="Markdown instructions for annotators."),
    edits: bool = typer.Option(
        False,
        "--edits",
        help="Compare edits: the source image and the instruction above two results, asking instruction "
        "fidelity, preservation, aesthetics and safety.",
    ),
    url: str | None = Url,
    token_env: str = TokenEnv,
    state_dir: Path = StateDir,
) -> None:
    """Create (or update) the comparison project: prompt, two images, one left/right/tie question per axis."""
    from imagepref.labeling.project import create_project

    settings = _config(config, title=title, overlap=overlap, instructions=instructions, edits=edits or None)
    project = create_project(_connect(url, token_env, state_dir), settings)
    console.print(
        f"project {project.title!r} (id {project.id}): axes {', '.join(settings.axes)}, overlap {project.overlap}"
    )


@app.command("push")
def push_command(
    candidates: Path = typer.Argument(..., help="Candidate-set folder (candidates.parquet + images/)."),
    config: Path | None = ConfigFile,
    title: str | None = Title,
    pairing: str | None = typer.Option(None, help="random | all | uncertainty"),
    scores: Path | None = typer.Option(None, help="Reward-model scores file (parquet/CSV), see docs/formats.md."),
    pre_annotate: bool = typer.Option(False, "--pre-annotate", help="Add the scores' choices as predictions."),
    gold_file: Path | None = typer.Option(None, help="Known-answer pairs file."),
    gold_rate: float | None = typer.Option(
        None, help="Gold pairs per regular pair.", callback=option_bounds(_labeling_config, "gold_rate")
    ),
    max_pairs: int | None = typer.Option(
        None, help="Cap on regular pairs.", callback=option_bounds(_labeling_config, "max_pairs")
    ),
    document_root: Path | None = typer.Option(None, help="With --url: the folder the server serves local files from."),
    url: str | None = Url,
    token_env: str = TokenEnv,
    state_dir: Path = StateDir,
) -> None:
    """Make pairs from a candidate set and add the ones the project lacks (a second push adds 0)."""
    from imagepref.formats import read_candidate_set
    from imagepref.labeling.connection import managed_files_root
    from imagepref.labeling.push import push

    read_candidate_set(candidates)  # a wrong folder fails before any server is needed

    settings = _config(
        config,
        title=title,
        pairing=pairing,
        scores_file=scores,
        gold_file=gold_file,
        gold_rate=gold_rate,
        max_pairs=max_pairs,
    )
    root = document_root or (None if url else managed_files_root(state_dir))
    # The connection is not checked up front: push validates the candidate set before its first call.
    report = push(
        _connect(url, token_env, state_dir, check=False), candidates, settings, root, pre_annotate=pre_annotate
    )
    console.print(
        f"pushed {report.added} new pair(s) ({report.gold_added} gold), {report.already_present} already there, "
        f"in {report.seconds:.1f} s"
    )


@app.command("pull")
def pull_command(
    out: Path = typer.Option(..., "--out", help="Folder for the preference data."),
    from_file: Path | None = typer.Option(
        None, "--from-file", help="Read a saved Label Studio JSON export instead of the server."
    ),
    allow_quarantine: bool = typer.Option(
        False, "--allow-quarantine", help="Exit 0 even when some annotations were quarantined."
    ),
    config: Path | None = ConfigFile,
    title: str | None = Title,
    url: str | None = Url,
    token_env: str = TokenEnv,
    state_dir: Path = StateDir,
) -> None:
    """Write annotations.parquet and pairs.parquet (plus gold, quarantine, agreement) from what people submitted."""
    from imagepref.labeling.agreement import format_agreement_table
    from imagepref.labeling.pull import pull

    settings = _config(config, title=title)
    if from_file is not None:
        # Axes the config does not set are the export's own (edits or images).
        given = "axes" in settings.model_fields_set or settings.edits
        report = pull(out, axes=settings.axes if given else None, from_file=from_file)
    else:
        report = pull(out, connection=_connect(url, token_env, state_dir), title=settings.title)
    console.print(
        f"{report.written} judgment(s) on {report.pairs} pair(s), {report.gold} gold, {report.skipped} skipped, "
        f"{report.partial} partial, {report.superseded} superseded, {report.quarantined} quarantined "
        f"({out / 'quarantine.jsonl'}), in {report.seconds:.1f} s"
    )
    console.print(format_agreement_table(json.loads((out / "agreement.json").read_text())))
    if report.quarantined and not allow_quarantine:
        reasons = "; ".join(f"{count} {reason}" for reason, count in report.quarantine_reasons.items())
        raise BadInputError(
            f"{report.quarantined} annotation(s) had unknown axes or bogus values ({reasons}); everything else is "
            f"written and they are kept in {out / 'quarantine.jsonl'} (--allow-quarantine to accept)"
        )


@app.command("stats")
def stats(
    data: Path | None = typer.Option(
        None, "--data", help="A pulled preference-data folder (default: pull live into memory)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the agreement JSON here."),
    config: Path | None = ConfigFile,
    title: str | None = Title,
    url: str | None = Url,
    token_env: str = TokenEnv,
    state_dir: Path = StateDir,
) -> None:
    """Agreement per axis: Krippendorff's alpha, pairwise agreement, per-annotator majority and gold accuracy, tie rate."""
    import tempfile

    from imagepref.labeling.agreement import agreement_from_folder, format_agreement_table, save_agreement
    from imagepref.labeling.pull import pull

    if data is not None:
        if not (data / "annotations.parquet").is_file():
            raise BadInputError(f"{data} holds no annotations.parquet; pass a folder written by `imagepref label pull`")
        report = agreement_from_folder(data)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            pull(
                Path(scratch) / "pulled",
                connection=_connect(url, token_env, state_dir),
                title=_config(config, title=title).title,
            )
            report = json.loads((Path(scratch) / "pulled" / "agreement.json").read_text())
    console.print(format_agreement_table(report))
    if out is not None:
        save_agreement(report, out)


@app.command("invite")
def invite_command(
    emails: list[str] = typer.Argument(..., help="E-mail addresses of the annotators."),
    url: str | None = Url,
    token_env: str = TokenEnv,
    state_dir: Path = StateDir,
) -> None:
    """Create annotator accounts that can log in (invite-link sign-up) and say how each person gets in."""
    from imagepref.labeling.accounts import invite

    for person in invite(_connect(url, token_env, state_dir), emails, state_dir / "annotators.json"):
        if person.created:
            console.print(
                f"{person.email}: log in at {person.login_url} with the password stored in {person.password_file} "
                "(0600; hand it over privately, they can change it under Account & Settings)"
            )
        else:
            console.print(f"{person.email}: already has an account; log in at {person.login_url}")


@app.command("simulate")
def simulate_command(
    judge: str = typer.Option(
        "glyph", help="'glyph' (the glyph world's rules) or 'package.module:factory' taking the axes."
    ),
    annotators: int = typer.Option(
        2, help="How many simulated annotators.", callback=option_bounds(LabelSection, "annotators")
    ),
    error_rate: float = typer.Option(
        0.1, help="Chance per axis that an answer is flipped.", callback=option_bounds(LabelSection, "error_rate")
    ),
    seed: int = typer.Option(0, help="Seed of the simulated answers and errors.", callback=option_bounds(Seed)),
    limit: int | None = typer.Option(
        None, help="Label at most this many tasks.", callback=option_bounds(Annotated[int, Field(ge=1)])
    ),
    config: Path | None = ConfigFile,
    title: str | None = Title,
    url: str | None = Url,
    token_env: str = TokenEnv,
    state_dir: Path = StateDir,
) -> None:
    """Scripted judges log in as their own annotator accounts and label through the API like people."""
    from imagepref.eval.judges import load_judge
    from imagepref.labeling.export import axes_of
    from imagepref.labeling.project import require_project
    from imagepref.labeling.simulate import simulate

    settings = _config(config, title=title)
    connection = _connect(url, token_env, state_dir)
    # The judge answers the questions the project asks (a project of edits asks its own).
    axes = axes_of(require_project(connection, settings.title).label_config)
    report = simulate(
        connection,
        settings.title,
        load_judge(judge, axes, setting="--judge"),
        state_dir / "annotators.json",
        annotators,
        error_rate,
        seed,
        limit,
    )
    console.print(
        f"{report.submitted} judgment(s) submitted, {report.already_done} already there: "
        + ", ".join(f"{who} {count}" for who, count in report.per_annotator.items())
    )
