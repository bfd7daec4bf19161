"""`imagepref chat` and `imagepref train-edits`: multi-turn refinement from the terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from imagepref.policy.config import EditTrainingConfig, SamplingConfig
from imagepref.settings import Seed, option_bounds

console = Console(stderr=True)


def chat(
    model: Path = typer.Option(..., "--model", help="Generator folder (a glyph or causal-vq generator)."),
    out: Path = typer.Option(
        Path("chat"), "--out", help="Folder for each turn's image and turns.jsonl (must not exist or be empty)."
    ),
    script: Path | None = typer.Option(
        None,
        "--script",
        help="Run a file of turns (KEY: VALUE a line: prompt, instruction or an edit kind such as "
        "ink_colour: blue) instead of reading the terminal.",
    ),
    seed: int = typer.Option(0, help="Sampling seed (turn n samples with seed + n).", callback=option_bounds(Seed)),
    guidance_scale: float | None = typer.Option(
        None,
        help="Guidance of every turn (default: the generator's own).",
        callback=option_bounds(SamplingConfig, "guidance_scale"),
    ),
    edit_guidance_scale: float | None = typer.Option(
        None,
        help="Guidance of edit turns against the source kept unchanged (default: --guidance-scale's).",
        callback=option_bounds(SamplingConfig, "guidance_scale"),
    ),
    temperature: float = typer.Option(
        1.0, help="Sampling temperature.", callback=option_bounds(SamplingConfig, "temperature")
    ),
    top_k: int = typer.Option(
        0, help="Keep the k most likely codes (0 = all).", callback=option_bounds(SamplingConfig, "top_k")
    ),
    device: str | None = typer.Option(None, help="torch device, e.g. cuda (default: cpu)."),
) -> None:
    """Edit an image by instruction, turn by turn: a prompt first, then one instruction a line; each
    turn's image is saved and its path printed."""
    from imagepref.policy.chat import ChatSession, ChatTurn, read_chat_script

    turns = read_chat_script(script) if script is not None else None  # checked before the model loads
    from imagepref.policy.generator import load_generator

    generator = load_generator(model, device=device)
    session = ChatSession(
        generator,
        out,
        seed=seed,
        sampler={"guidance_scale": guidance_scale, "temperature": temperature, "top_k": top_k},
        edit_guidance_scale=edit_guidance_scale,
    )
    if turns is not None:
        for turn in turns:
            print(session.turn(turn), flush=True)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        console.print("a prompt first, then one instruction a line; /new PROMPT starts over, an empty line ends")
    for line in sys.stdin:
        text = line.strip()
        if not text:
            if interactive:
                break
            continue
        if text.startswith("/new "):
            turn = ChatTurn("prompt", text[5:].strip())
        else:
            turn = ChatTurn("prompt" if session.source_codes is None else "instruction", text)
        print(session.turn(turn), flush=True)


def train_edits(
    out: Path = typer.Option(..., "--out", help="Folder for the edit-trained generator (must not exist or be empty)."),
    base: Path | None = typer.Option(
        None, "--base", help="Glyph-world generator to start from (default: the shipped one)."
    ),
    steps: int | None = typer.Option(
        None, help="Optimizer steps.", callback=option_bounds(EditTrainingConfig, "steps")
    ),
    batch_size: int | None = typer.Option(
        None, help="Turns per step.", callback=option_bounds(EditTrainingConfig, "batch_size")
    ),
    lr: float | None = typer.Option(None, help="Peak learning rate.", callback=option_bounds(EditTrainingConfig, "lr")),
    seed: int | None = typer.Option(None, help="Seed of the edit stream.", callback=option_bounds(Seed)),
    first_code_spread: float | None = typer.Option(
        None,
        help="Spread of the background codes' output rows before training (1 when continuing from an edit-trained "
        "generator, whose rows are spread already).",
        callback=option_bounds(EditTrainingConfig, "first_code_spread"),
    ),
    kept_code_weight: float | None = typer.Option(
        None,
        help="Loss weight of the new image's codes that equal the source's (what the edit keeps; 1: the plain loss).",
        callback=option_bounds(EditTrainingConfig, "kept_code_weight"),
    ),
) -> None:
    """Teach a glyph-world generator to edit by instruction: fine-tune it on seeded edit turns."""
    from imagepref.errors import BadInputError

    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out} exists and is not empty; choose another --out")
    if base is None:
        from imagepref.policy.glyphworld import shipped_generator

        base = shipped_generator()
        if base is None:
            raise BadInputError("no shipped glyph generator in this install: pass --base")
    overrides = dict(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        first_code_spread=first_code_spread,
        kept_code_weight=kept_code_weight,
    )
    config = EditTrainingConfig(**{k: v for k, v in overrides.items() if v is not None})
    from imagepref.policy.edit_training import train_edits as run

    def progress(step: int, total: int, loss: float) -> None:
        if step % 10 == 0 or step == total:
            console.print(f"step {step}/{total} loss {loss:.3f}")

    run(base, out, config, progress=progress, log=lambda line: console.print(line))
    console.print(f"saved the edit-trained generator to {out}")


def register(app: typer.Typer) -> None:
    """Add chat and train-edits to the root app."""
    app.command(help=chat.__doc__)(chat)
    app.command("train-edits", help=train_edits.__doc__)(train_edits)
