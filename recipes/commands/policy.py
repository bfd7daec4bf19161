"""`imagepref pretrain` and `imagepref generate`: the generator's own commands."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from imagepref.errors import BadInputError
from imagepref.policy.config import PretrainConfig, SamplingConfig
from imagepref.settings import Seed, option_bounds

console = Console(stderr=True)
LOG_EVERY = 50  # pretraining steps between step lines when the console is not a terminal


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def pretrain(
    out: Path = typer.Option(..., "--out", help="Folder for the trained generator (resumes from out/checkpoint)."),
    steps: int | None = typer.Option(
        None,
        help="Optimizer steps (default: the shipped generator's).",
        callback=option_bounds(PretrainConfig, "steps"),
    ),
    seed: int | None = typer.Option(
        None, help="Seed of codec, weights and data (default 0).", callback=option_bounds(Seed)
    ),
    batch_size: int | None = typer.Option(
        None, help="Signs per step.", callback=option_bounds(PretrainConfig, "batch_size")
    ),
    hidden_size: int | None = typer.Option(
        None,
        help="Width of the Llama (a multiple of 8: twice the 4 heads).",
        callback=option_bounds(PretrainConfig, "hidden_size"),
    ),
    layers: int | None = typer.Option(
        None, help="Transformer layers.", callback=option_bounds(PretrainConfig, "layers")
    ),
    random_share: float | None = typer.Option(
        None,
        help="Share of signs spelling fresh random letter strings instead of training words (0 to 1).",
        callback=option_bounds(PretrainConfig, "random_share"),
    ),
    ink_loss_weight: float | None = typer.Option(
        None,
        help="Loss weight of image codes showing ink against blank ones.",
        callback=option_bounds(PretrainConfig, "ink_loss_weight"),
    ),
    lr_restart: list[str] | None = typer.Option(
        None, metavar="STEP:PEAK", help="A warm restart of the learning rate (repeatable), e.g. 500:1e-3."
    ),
) -> None:
    """Pretrain the glyph-world generator (codec, then the Llama) on fresh signs, resumably."""
    from imagepref.files import check_output

    # A folder of an earlier run (its checkpoint/ or the saved generator) is resumed; any other
    # folder with files in it is refused before torch is imported.
    check_output(out, may_hold_files=True)
    if out.is_dir() and any(out.iterdir()) and not ((out / "checkpoint").exists() or (out / "imagepref.json").exists()):
        raise BadInputError(
            f"--out {out} holds other files and is not a generator or pretraining folder; choose a fresh --out"
        )

    overrides = {
        k: v
        for k, v in dict(
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            hidden_size=hidden_size,
            layers=layers,
            random_share=random_share,
            ink_loss_weight=ink_loss_weight,
        ).items()
        if v is not None
    }
    if lr_restart:
        try:
            restarts = [(int(item.split(":")[0]), float(item.split(":")[1])) for item in lr_restart]
            PretrainConfig.model_validate({"lr_restarts": restarts})
        except (ValueError, IndexError):
            raise BadInputError(
                f"--lr-restart takes STEP:PEAK with a step of at least 1 and a positive peak, e.g. 500:1e-3, "
                f"not {' '.join(lr_restart)}"
            ) from None
        overrides["lr_restarts"] = restarts
    config = PretrainConfig(**overrides)
    if config.steps <= 0 or config.batch_size <= 0:
        raise BadInputError("--steps and --batch-size must be at least 1")
    from imagepref.policy.pretrain import pretrain as run_pretrain

    with _progress() as progress:
        task = progress.add_task("pretrain", total=config.steps, info="")
        codec_task = progress.add_task("codec k-means", total=config.codec_iterations, info="")

        started = time.monotonic()

        def update(stage: str, done, total, info: dict) -> None:
            if stage == "codec":
                progress.advance(codec_task)
                return
            progress.update(task, completed=done, info=f"loss {info.get('loss', 0):.3f}")
            # Redirected to a file, rich draws no bar: a step line now and then tells a reader of
            # the log how far the run is.
            if not progress.console.is_terminal and (done % LOG_EVERY == 0 or done == total):
                progress.console.print(
                    f"pretrain step {done}/{total} loss {info.get('loss', 0):.3f} ({time.monotonic() - started:.0f} s)",
                    soft_wrap=True,
                )

        run_pretrain(out, config, progress=update, log=lambda line: progress.console.print(line))
    console.print(f"saved the generator to {out}", soft_wrap=True)


def generate(
    model: Path = typer.Option(..., "--model", help="Generator folder (imagepref.json inside)."),
    prompts: Path | None = typer.Option(
        None, "--prompts", help='Prompts: JSONL ({"prompt": ...} a line) or text, one a line.'
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the candidate set (must not exist or be empty)."),
    edits: str | None = typer.Option(
        None,
        "--edits",
        help="Edit instead of drawing from prompts: glyphworld-edits (training-like glyph-world edits), "
        'glyphworld-edits-heldout, or a JSONL file of {"source": CANDIDATE_ID, "instruction": ...} with --sources.',
    ),
    sources: Path | None = typer.Option(
        None, "--sources", help="Candidate set whose candidates an edits file names (their image_tokens are edited)."
    ),
    limit: int = typer.Option(
        0,
        help="Use only the first N prompts or edits (0: all; glyphworld-edits: 64).",
        callback=option_bounds(Annotated[int, Field(ge=0)]),
    ),
    n: int = typer.Option(
        2, "--n", help="Images per prompt (per edit).", callback=option_bounds(Annotated[int, Field(ge=1)])
    ),
    seed: int = typer.Option(0, help="Sampling seed.", callback=option_bounds(Seed)),
    guidance_scale: float | None = typer.Option(
        None,
        help="Classifier-free guidance scale (1 = none; default: the generator's own).",
        callback=option_bounds(SamplingConfig, "guidance_scale"),
    ),
    temperature: float = typer.Option(
        1.0, help="Sampling temperature.", callback=option_bounds(SamplingConfig, "temperature")
    ),
    top_k: int = typer.Option(
        0, help="Keep the k most likely codes (0 = all).", callback=option_bounds(SamplingConfig, "top_k")
    ),
    top_p: float = typer.Option(
        1.0, help="Nucleus sampling mass (0 < p <= 1).", callback=option_bounds(SamplingConfig, "top_p")
    ),
    batch_size: int = typer.Option(
        32, help="Images per sampler batch.", callback=option_bounds(SamplingConfig, "batch_size")
    ),
    decoding: str = typer.Option(
        "plain",
        help="plain, or sjd: speculative Jacobi decoding (same distribution, fewer forward passes).",
        callback=option_bounds(SamplingConfig, "decoding"),
    ),
    window: int = typer.Option(
        8,
        help="Draft codes verified per forward pass (--decoding sjd).",
        callback=option_bounds(SamplingConfig, "window"),
    ),
    device: str | None = typer.Option(None, help="torch device, e.g. cuda (default: cpu)."),
    dtype: str | None = typer.Option(None, help="Weights dtype: float32, bfloat16 or float16 (default: the family's)."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow a family's remote code (off by default)."
    ),
) -> None:
    """Sample N images per prompt (or N edits of each source with --edits) and write a candidate
    set (candidates.parquet + images/)."""
    from imagepref.devices import check_device
    from imagepref.dtypes import check_dtype
    from imagepref.files import check_output
    from imagepref.formats import read_prompts
    from imagepref.policy.config import check_generator_folder

    # Every input is checked before torch is imported: a bad one fails in about a second.
    check_dtype(dtype, "--dtype")
    check_output(out, inputs=[model, *([sources] if sources else [])])
    check_generator_folder(model)
    if (prompts is None) == (edits is None):
        raise BadInputError("pass --prompts FILE (images from prompts) or --edits (edited images), one of them")
    if sources is not None and edits in EDIT_SETS + (None,):
        raise BadInputError("--sources goes with an edits file (--edits FILE), whose lines name its candidates")
    prompt_rows, requests, source_table = [], [], None
    if prompts is not None:
        prompt_rows = [{"prompt_id": p.prompt_id, "prompt": p.prompt} for p in read_prompts(prompts)]
        prompt_rows = prompt_rows[:limit] if limit else prompt_rows
    elif edits not in EDIT_SETS:
        from imagepref.formats import read_candidate_set, read_edit_requests

        if not Path(edits).exists() and "/" not in edits and Path(edits).suffix == "":
            raise BadInputError(f"unknown edit set {edits!r}; choose one of: {', '.join(EDIT_SETS)}, or pass a file")
        requests = read_edit_requests(edits)
        requests = requests[:limit] if limit else requests
        if sources is None:
            raise BadInputError(
                "an edits file names candidates of a source set: pass --sources DIR (a candidate set with image_tokens)"
            )
        source_table = read_candidate_set(sources, ["image_tokens"], "(the codes of the images to edit)")
        _check_source_codes(model, source_table, requests)
    check_device(device)

    from imagepref.dtypes import torch_dtype
    from imagepref.policy.candidates import write_candidate_set
    from imagepref.policy.generator import load_generator

    generator = load_generator(
        model, dtype=torch_dtype(dtype, "--dtype"), device=device, trust_remote_code=trust_remote_code
    )
    sampler = SamplingConfig(
        guidance_scale=guidance_scale,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        decoding=decoding,
        window=window,
    ).sampler()
    if edits is not None:
        from imagepref.policy.candidates import glyph_edit_jobs, source_set_edit_jobs, write_edit_candidate_set
        from imagepref.policy.editing import check_can_edit

        check_can_edit(generator)
        if source_table is not None:
            jobs = source_set_edit_jobs(source_table, requests)
        else:
            jobs = glyph_edit_jobs(generator, glyph_edit_set(edits, limit))
        task_name, total = "edit", len(jobs) * n
        draw = partial(
            write_edit_candidate_set, generator, jobs, out, images_per_edit=n, extra={"edit_set": str(edits)}
        )
        wrote = f"{len(jobs)} source(s) and {len(jobs) * n} edited candidates"
    else:
        task_name, total = "generate", len(prompt_rows) * n
        draw = partial(write_candidate_set, generator, prompt_rows, out, images_per_prompt=n)
        wrote = f"{total} candidates"
    with _progress() as progress:
        task = progress.add_task(task_name, total=total, info="")
        draw(
            seed=seed,
            sampler=sampler,
            batch_size=batch_size,
            generator_name=f"{generator.family}:{model}",
            on_progress=lambda done, total: progress.update(task, completed=done),
        )
    console.print(f"wrote {wrote} to {out}")


def _check_source_codes(model: Path, sources, requests) -> None:
    """Each requested source's codes fit the generator's codec (count and range), checked from
    ``imagepref.json`` before torch is imported; a source set made by another codec is refused."""
    import json

    from imagepref.policy.config import GENERATOR_CONFIG

    config_file = model / GENERATOR_CONFIG
    if not config_file.is_file():
        return  # a family's own checkpoint: Generator.edit checks the codes once it is loaded
    record = json.loads(config_file.read_text(encoding="utf-8"))
    count, vocabulary = record.get("tokens_per_image"), record.get("num_image_tokens")
    for request in requests:
        if request.source not in sources.index:
            raise BadInputError(
                f"edit {request.edit_id!r} names source {request.source!r}, which is not a candidate of --sources"
            )
        codes = list(sources.at[request.source, "image_tokens"])
        if (count is not None and len(codes) != count) or (
            vocabulary is not None and codes and not 0 <= min(codes) <= max(codes) < vocabulary
        ):
            raise BadInputError(
                f"source {request.source!r} has {len(codes)} image codes up to {max(codes, default=0)}; this generator's "
                f"images are {count} codes in [0, {vocabulary}): was the source made by another codec?"
            )


# The built-in glyph-world edit sets of ``generate --edits``, and how many edits each draws by default.
EDIT_SETS = ("glyphworld-edits", "glyphworld-edits-heldout")
TRAINING_EDITS = 64


def glyph_edit_set(name: str, limit: int = 0) -> list:
    """The glyph-world edits of a built-in set: ``glyphworld-edits``, seeded edits drawn like the
    edit training's (``limit`` of them, default ``TRAINING_EDITS``; never a held-out word or
    phrasing), or ``glyphworld-edits-heldout``, the held-out evaluation edits (the first
    ``limit``, default 200)."""
    from imagepref.policy.glyphworld.edits import heldout_edits, training_edits

    if name == "glyphworld-edits-heldout":
        return heldout_edits(limit or 200)
    return training_edits(limit or TRAINING_EDITS)


def register(app: typer.Typer) -> None:
    """Add pretrain and generate to the root app."""
    app.command(help=pretrain.__doc__)(pretrain)
    app.command(help=generate.__doc__)(generate)
