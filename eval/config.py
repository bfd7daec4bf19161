"""The settings of one evaluation (``imagepref eval``, the recipe's eval stage).

Pydantic only, so the command line checks its options against these bounds before anything
heavy is imported.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from imagepref.policy.config import SamplingConfig
from imagepref.settings import Seed

# The OCR engines imagepref.eval.ocr builds (its ENGINES), named here so that every setting that
# takes one is checked before anything heavy loads.
OCR_ENGINES = ("rapidocr", "tesseract")


def _known_engine(name: str) -> str:
    if name not in OCR_ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of: {', '.join(OCR_ENGINES)}")
    return name


OCREngineName = Annotated[str, AfterValidator(_known_engine)]


class EvalSettings(SamplingConfig):
    """Settings of one evaluation; all of them are recorded in ``results.json``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    samples: int = Field(2, ge=1, description="Images per prompt and checkpoint (2 or more gives a diversity figure).")
    seed: Seed = Field(0, description="Sampling seed; the same seed, checkpoint and prompts reuse cached images.")
    ocr_engine: OCREngineName = Field("rapidocr", description="OCR engine: rapidocr or tesseract.")
    workers: int | None = Field(None, ge=0, description="OCR processes (None or 0: one per core).")
    baseline: str | None = Field(
        None, description="Checkpoint the win rates are computed against (default: the first)."
    )
    grid_prompts: int = Field(40, ge=0, description="Prompts shown in the report's image grid.")
    bootstrap_seed: Seed = Field(0, description="Seed of the bootstrap intervals.")
    dtype: str | None = Field(
        None, description="Weights' dtype of the checkpoints (float32, bfloat16, float16; default: the family's)."
    )
    device: str | None = Field(None, description="Torch device to sample on (default: the loader's).")
