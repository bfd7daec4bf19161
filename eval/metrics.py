"""Text-rendering metrics: does the image spell what the prompt quoted?

Per image, against the target pieces quoted in the prompt (``extract_targets``):

- ``exact_match``: every piece is read exactly (after normalisation) as a run of words;
- ``word_accuracy``: the fraction of target words found in the reading (a multiset: a word
  quoted twice must be read twice);
- ``cer``: character error rate, edits ÷ target characters, each piece against the run of read
  words that matches it best (as AnyText scores the text region, not the whole image);
- ``ned``: 1 − Levenshtein ÷ max(len(piece), len(read run)), AnyText's normalised edit distance;
- ``word_precision``/``word_recall``/``word_f1``: MARIO-Eval's word-level figures, read words
  against target words; aggregated MARIO-Eval's way, from counts summed over images;
- ``flow_grpo_score``: Flow-GRPO's OCR reward, 1 − min(edits, len) ÷ len with spaces removed,
  against the whole reading less the runs matched to the other pieces, so stray text costs.

Prompts without quotes have no target: they are reported as such and left out of every mean,
never scored 0. Edit distances come from rapidfuzz.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from rapidfuzz.distance import Levenshtein

# Straight and curly double quotes, curly single quotes, and straight single quotes that bound a
# phrase (not apostrophes: the opening one follows no letter, the closing one precedes none).
_QUOTED = re.compile(r'"([^"]*)"|“([^”]*)”|‘([^’]*)’|(?<!\w)\'(.+?)\'(?!\w)')


@dataclass(frozen=True)
class TextNormalization:
    """How target and reading are compared: which differences do not count as errors."""

    ignore_case: bool = True
    ignore_punctuation: bool = True
    ignore_accents: bool = True
    collapse_spaces: bool = True

    def words(self, text: str) -> list[str]:
        """Normalise ``text`` and split it into words."""
        if self.ignore_accents:
            text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
        if self.ignore_case:
            text = text.casefold()
        if self.ignore_punctuation:
            # Punctuation and symbols vanish inside words ("don't" -> "dont", "$5" -> "5"), so a
            # reading that drops an apostrophe still matches; the OCR models often do.
            text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
        return text.split() if self.collapse_spaces else text.split(" ")


DEFAULT_NORMALIZATION = TextNormalization()


def extract_targets(prompt: str) -> list[str]:
    """The pieces of text quoted in ``prompt``, in order; an empty list when nothing is quoted."""
    pieces = []
    for match in _QUOTED.finditer(prompt):
        piece = next(group for group in match.groups() if group is not None).strip()
        if piece:
            pieces.append(piece)
    return pieces


@dataclass
class PieceScore:
    """The figures of one quoted piece against what was read."""

    target: str
    matched: str
    exact: bool
    edits: int
    cer: float
    ned: float
    flow_grpo_score: float


@dataclass
class TextScore:
    """The text-rendering figures of one image; every figure is None when there is no target."""

    targets: list[str]
    reading: str
    has_target: bool
    exact_match: bool | None = None
    word_accuracy: float | None = None
    cer: float | None = None
    ned: float | None = None
    word_precision: float | None = None
    word_recall: float | None = None
    word_f1: float | None = None
    flow_grpo_score: float | None = None
    target_chars: int = 0
    target_words: int = 0
    read_words: int = 0
    matched_words: int = 0
    pieces: list[PieceScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def _best_run(piece: str, words: list[str]) -> tuple[int, int, int]:
    """The run ``words[start:end]`` closest to ``piece`` by Levenshtein distance on the joined
    words, with its distance; the empty run is a candidate, ties go to the shorter run."""
    best = (len(piece), 0, 0)  # distance, start, end: the empty run
    for start in range(len(words)):
        for end in range(start + 1, len(words) + 1):
            distance = Levenshtein.distance(piece, " ".join(words[start:end]))
            if distance < best[0] or (distance == best[0] and end - start < best[2] - best[1]):
                best = (distance, start, end)
    return best


def score_text(
    targets: list[str] | str | None,
    reading: str,
    normalization: TextNormalization = DEFAULT_NORMALIZATION,
) -> TextScore:
    """Score one image's OCR ``reading`` against its target pieces (a list, one string, or None).

    With no target (None, or an empty list) the result has ``has_target=False`` and no figures.
    Otherwise each piece is scored on its own (see the module docstring) and the image's figures
    combine them: CER over all target characters, NED and the Flow-GRPO score as means over
    pieces, word figures over all target words.
    """
    if isinstance(targets, str):
        targets = [targets]
    targets = [t for t in (targets or []) if normalization.words(t)]
    read_words = normalization.words(reading)
    result = TextScore(targets=list(targets), reading=reading, has_target=bool(targets), read_words=len(read_words))
    if not targets:
        return result
    piece_words = [normalization.words(t) for t in targets]
    runs = [_best_run(" ".join(words), read_words) for words in piece_words]
    for index, (words, (edits, start, end)) in enumerate(zip(piece_words, runs)):
        piece = " ".join(words)
        matched = " ".join(read_words[start:end])
        others = {i for j, (_, s, e) in enumerate(runs) if j != index for i in range(s, e)}
        rest = "".join(w for i, w in enumerate(read_words) if i not in others)
        compact = piece.replace(" ", "")
        flow_edits = min(Levenshtein.distance(compact, rest), len(compact))
        result.pieces.append(
            PieceScore(
                target=piece,
                matched=matched,
                exact=edits == 0,
                edits=edits,
                cer=edits / len(piece),
                ned=1.0 - edits / max(len(piece), len(matched)),
                flow_grpo_score=1.0 - flow_edits / len(compact),
            )
        )
    all_target_words = [w for words in piece_words for w in words]
    matched_words = sum((Counter(all_target_words) & Counter(read_words)).values())
    result.target_chars = sum(len(p.target) for p in result.pieces)
    result.target_words = len(all_target_words)
    result.matched_words = matched_words
    result.exact_match = all(p.exact for p in result.pieces)
    result.cer = sum(p.edits for p in result.pieces) / result.target_chars
    result.ned = sum(p.ned for p in result.pieces) / len(result.pieces)
    result.flow_grpo_score = sum(p.flow_grpo_score for p in result.pieces) / len(result.pieces)
    result.word_recall = matched_words / len(all_target_words)
    result.word_accuracy = result.word_recall
    # MARIO-Eval: precision of an empty reading is undefined per image (its counts still enter
    # the aggregate); F1 is 0 whenever nothing matched.
    result.word_precision = matched_words / len(read_words) if read_words else None
    precision = result.word_precision or 0.0
    recall = result.word_recall
    result.word_f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return result


MEAN_FIGURES = ("exact_match", "word_accuracy", "ned", "flow_grpo_score")


def aggregate_text_scores(scores: list[TextScore]) -> dict[str, Any]:
    """Combine per-image scores: means over images with a target, CER and MARIO-Eval's word
    precision/recall/F1 from summed counts, and how many images had no target."""
    scored = [s for s in scores if s.has_target]
    summary: dict[str, Any] = {"images": len(scores), "scored": len(scored), "no_target": len(scores) - len(scored)}
    if not scored:
        summary.update({name: None for name in (*MEAN_FIGURES, "cer", "word_precision", "word_recall", "word_f1")})
        return summary
    for name in MEAN_FIGURES:
        summary[name] = sum(float(getattr(s, name)) for s in scored) / len(scored)
    summary["cer"] = sum(p.edits for s in scored for p in s.pieces) / sum(s.target_chars for s in scored)
    matched = sum(s.matched_words for s in scored)
    read = sum(s.read_words for s in scored)
    target = sum(s.target_words for s in scored)
    precision = matched / read if read else 0.0
    recall = matched / target
    summary["word_precision"] = precision
    summary["word_recall"] = recall
    summary["word_f1"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return summary
