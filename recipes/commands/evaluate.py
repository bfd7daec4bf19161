"""`imagepref eval`: score checkpoints and write a report."""

from __future__ import annotations

from pathlib import Path

import typer

from imagepref.errors import ImagePrefError
from imagepref.eval.config import EvalSettings
from imagepref.recipes.config import EvalSection
from imagepref.settings import option_bounds


def register(app: typer.Typer) -> None:
    """Add the eval command to the root app."""

    @app.command(
        "eval",
        context_settings={"allow_extra_args": True},
        help="Score checkpoints on text rendering (OCR) and every axis; write results.json, summary.md and report.html.",
    )
    def eval_command(
        context: typer.Context,
        checkpoints: list[Path] = typer.Option(..., "--checkpoints", help="Checkpoint folders: --checkpoints A B C."),
        prompts: str = typer.Option(
            "text-rendering", "--prompts", help="text-rendering, glyphworld-heldout, or a JSONL/text file."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder (images are cached here and reused)."),
        samples: int = typer.Option(
            2,
            help="Images per prompt (2 or more gives a diversity figure).",
            callback=option_bounds(EvalSettings, "samples"),
        ),
        seed: int = typer.Option(
            0,
            help="Sampling seed; same seed, checkpoint and prompts reuse cached images.",
            callback=option_bounds(EvalSettings, "seed"),
        ),
        guidance_scale: float | None = typer.Option(
            None,
            help="Classifier-free guidance scale of the sampler (default: the generator's own).",
            callback=option_bounds(EvalSettings, "guidance_scale"),
        ),
        temperature: float = typer.Option(
            1.0, help="Sampling temperature.", callback=option_bounds(EvalSettings, "temperature")
        ),
        decoding: str = typer.Option(
            "plain",
            help="plain, or sjd: speculative Jacobi decoding (same distribution, fewer forward passes).",
            callback=option_bounds(EvalSettings, "decoding"),
        ),
        window: int = typer.Option(
            8,
            help="Draft codes verified per forward pass (--decoding sjd).",
            callback=option_bounds(EvalSettings, "window"),
        ),
        limit: int = typer.Option(
            0, help="Evaluate only the first N prompts (0: all).", callback=option_bounds(EvalSection, "limit")
        ),
        ocr_engine: str = typer.Option(
            "rapidocr",
            help="OCR engine: rapidocr (default) or tesseract.",
            callback=option_bounds(EvalSettings, "ocr_engine"),
        ),
        workers: int = typer.Option(
            0,
            help="OCR processes (0: chosen from the free cores and the images).",
            callback=option_bounds(EvalSettings, "workers"),
        ),
        baseline: str = typer.Option(None, help="Checkpoint to compute win rates against (default: the first)."),
        reward_model: Path = typer.Option(None, help="Reward model folder for per-axis scores (optional)."),
        grid_prompts: int = typer.Option(
            40, help="Prompts shown in the report's image grid.", callback=option_bounds(EvalSettings, "grid_prompts")
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        dtype: str | None = typer.Option(
            None, "--dtype", help="Weights dtype: float32, bfloat16 or float16 (default: the family's)."
        ),
        device: str | None = typer.Option(
            None, "--device", help="torch device to sample on, e.g. cuda (default: the loader's)."
        ),
    ) -> None:
        from imagepref.devices import check_device
        from imagepref.dtypes import check_dtype
        from imagepref.eval.prompts import load_prompts
        from imagepref.files import check_output
        from imagepref.policy.config import check_generator_folder
        from imagepref.reward.config import check_scored_set, read_model_config

        # Every input is checked before torch is imported: a bad one fails in about a second.
        check_dtype(dtype, "--dtype")
        extra = [Path(arg) for arg in context.args]
        unknown = [str(arg) for arg in extra if str(arg).startswith("-")]
        if unknown:
            raise ImagePrefError(f"unknown option {unknown[0]}; see imagepref eval --help")
        # The folder may hold an earlier evaluation: its cached images are reused.
        check_output(out, inputs=[*checkpoints, *extra], may_hold_files=True)
        for checkpoint in [*checkpoints, *extra]:
            check_generator_folder(checkpoint)
        prompt_list = load_prompts(prompts)
        if reward_model is not None:
            check_scored_set(
                read_model_config(reward_model),
                any(p.is_edit for p in prompt_list),
                what="--prompts",
                make_edits="evaluate it on edits (--prompts glyphworld-edits-heldout)",
            )
        check_device(device)

        from imagepref.eval.report import markdown_summary
        from imagepref.eval.runner import EvalSettings, evaluate, reward_model_scorer

        if limit > 0:
            prompt_list = prompt_list[:limit]
        settings = EvalSettings(
            samples=samples,
            seed=seed,
            guidance_scale=guidance_scale,
            temperature=temperature,
            decoding=decoding,
            window=window,
            ocr_engine=ocr_engine,
            workers=workers or None,
            baseline=baseline,
            grid_prompts=grid_prompts,
            dtype=dtype,
            device=device,
        )
        scorer = reward_model_scorer(reward_model) if reward_model is not None else None
        results = evaluate(
            list(checkpoints) + extra,
            prompt_list,
            out,
            settings,
            prompt_set=prompts,
            reward_scorer=scorer,
            progress=not quiet,
        )
        # The console gets the figures and win rates; the table by target (a row per quoted
        # target) stays in summary.md and report.html.
        typer.echo(markdown_summary(results, by_target=False))
        by_target = " (with a table by target)" if results["prompt_set"]["with_target"] else ""
        typer.echo(
            f"wrote {out / 'results.json'}, {out / 'summary.md'}{by_target} and {out / 'report.html'}"
            f" ({len(results['checkpoints'])} checkpoints)"
        )
