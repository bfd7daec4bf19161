"""The pretrain and generate stages: a base generator, then each round's candidate set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagepref.errors import BadInputError
from imagepref.policy.glyphworld import shipped_edit_generator, shipped_generator
from imagepref.recipes.runner import StageContext


def load_policy(context: StageContext, path: Path):
    """Load the generator at ``path`` with the recipe's dtype, device and remote-code setting."""
    from imagepref.dtypes import torch_dtype
    from imagepref.policy.generator import load_generator

    section = context.recipe.generator
    return load_generator(
        path, dtype=torch_dtype(section.dtype), device=section.device, trust_remote_code=section.trust_remote_code
    )


def _shipped(recipe) -> Path | None:
    """The shipped glyph generator a recipe starts from: for a loop of edits, the one taught to edit."""
    return shipped_edit_generator() if recipe.generate.edits else shipped_generator()


def base_generator(context: StageContext) -> Path:
    """The generator the loop starts from: the pretrain stage's output, else the recipe's path,
    else the shipped one (for a loop of edits, the shipped edit-trained one); an error when none
    exists."""
    found = context.output("pretrain", "generator")
    if found is not None:
        return found
    if context.recipe.generator.path:
        return Path(context.recipe.generator.path)
    shipped = _shipped(context.recipe)
    if context.recipe.pretrain.reuse_shipped and shipped is not None:
        return shipped
    raise BadInputError(
        "no generator to start from: add pretrain to stages, set generator.path=DIR, "
        "or install imagepref with its shipped glyph generator"
    )


def round_generator(context: StageContext) -> Path:
    """The generator of this stage's round: the previous round's aligned one, else the base."""
    if context.stage.round and context.stage.round > 1:
        aligned = context.output("align", "generator", context.stage.round - 1)
        if aligned is not None:
            return aligned
    return base_generator(context)


def pretrain_inputs(recipe) -> dict[str, Any]:
    """What the pretrain stage reads besides the recipe: whether the shipped generator is there
    (it arriving or leaving changes the stage), and the given generator's config file."""
    given = Path(recipe.generator.path) / "imagepref.json" if recipe.generator.path else None
    return {
        "shipped": _shipped(recipe) is not None and recipe.pretrain.reuse_shipped,
        "given": given.read_text() if given is not None and given.is_file() else None,
    }


def run_pretrain(context: StageContext) -> dict[str, Any]:
    """Use the given or shipped generator, else pretrain a glyph generator (resuming from its checkpoint)."""
    from imagepref.policy.generator import read_config
    from imagepref.policy.pretrain import pretrain

    recipe = context.recipe
    if recipe.generator.path:
        read_config(recipe.generator.path)
        context.log(f"using the given generator {recipe.generator.path}")
        return {"generator": str(Path(recipe.generator.path).resolve()), "source": "given"}
    shipped = _shipped(recipe)
    if recipe.pretrain.reuse_shipped and shipped is not None:
        context.log(f"using the shipped generator {shipped}")
        return {"generator": str(shipped), "source": "shipped"}
    config = recipe.pretrain.settings  # checked when the recipe loaded
    out = context.out / "generator"
    context.log(f"pretraining the glyph generator for {config.steps} steps into {context.relative(out)}")

    def progress(phase: str, done, total, info: dict) -> None:
        context.step(done, total, {"phase": phase, **info})

    pretrain(out, config, progress=progress, log=context.log)
    return {"generator": context.relative(out), "source": "pretrained"}


def round_prompts(context: StageContext) -> list[dict[str, str]]:
    """This round's prompts: fresh seeded glyph-world signs (training words only), or a file's."""
    section = context.recipe.generate
    round_ = context.stage.round or 1
    if section.prompts == "glyphworld":
        from imagepref.policy.glyphworld import training_specs

        specs = training_specs(section.num_prompts, seed=context.recipe.seed * 1000 + round_)
        return [{"prompt_id": f"r{round_}p{i}", "prompt": spec.prompt} for i, spec in enumerate(specs)]
    from imagepref.formats import read_prompts

    return [{"prompt_id": p.prompt_id, "prompt": p.prompt} for p in read_prompts(section.prompts)][
        : section.num_prompts
    ]


def run_generate(context: StageContext) -> dict[str, Any]:
    """Sample this round's candidate set with the round's generator."""
    from imagepref.formats import CANDIDATES_FILE, read_candidate_set
    from imagepref.policy.candidates import write_candidate_set

    section = context.recipe.generate
    out = context.out / "candidates"
    source = round_generator(context)
    if (out / CANDIDATES_FILE).is_file():
        # The set is renamed into place only when complete, so finding it means it is whole.
        context.log("candidate set already complete")
    elif section.edits:
        from imagepref.policy.candidates import glyph_edit_jobs, write_edit_candidate_set
        from imagepref.policy.editing import check_can_edit
        from imagepref.policy.glyphworld.edits import training_edits

        round_ = context.stage.round or 1
        generator = load_policy(context, source)
        check_can_edit(generator)
        edits = training_edits(section.num_prompts, seed=context.recipe.seed * 1000 + round_)
        jobs = glyph_edit_jobs(generator, edits, [f"r{round_}e{i}" for i in range(len(edits))])
        context.log(f"editing {len(jobs)} glyph-world signs x {section.images_per_prompt} results with {source}")
        write_edit_candidate_set(
            generator,
            jobs,
            out,
            images_per_edit=section.images_per_prompt,
            seed=context.recipe.seed * 100_000 + round_ * 1000,
            sampler=section.sampler(),
            batch_size=section.batch_size,
            generator_name=str(source),
            on_progress=lambda done, total: context.step(done, total, {"images": done}),
            id_prefix=f"r{context.stage.round}-",
        )
    else:
        prompts = round_prompts(context)
        generator = load_policy(context, source)
        sampler = section.sampler()
        context.log(f"sampling {len(prompts)} prompts x {section.images_per_prompt} images from {source}")
        write_candidate_set(
            generator,
            prompts,
            out,
            images_per_prompt=section.images_per_prompt,
            seed=context.recipe.seed * 100_000 + (context.stage.round or 1) * 1000,
            sampler=sampler,
            batch_size=section.batch_size,
            generator_name=str(source),
            on_progress=lambda done, total: context.step(done, total, {"images": done}),
            id_prefix=f"r{context.stage.round}-",
        )
    count = len(read_candidate_set(out))
    return {"candidates": context.relative(out), "images": count, "generator": str(source)}
