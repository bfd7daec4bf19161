"""Text-rendering metrics: does the image spell what the prompt quoted?

Per image, against the target pieces quoted in the prompt (``extract_targets``):

- ``exact_match``: every piece is read exactly (after normalisation) as a run of words;
- ``word_accuracy``: the fraction of target words found in the reading (a multiset: a word
  quoted twice must be read twice);
- ``cer``: character error rate, edits ÷ target characters, each piece against its run of read
  words (as AnyText scores the text region, not the whole image);
- ``ned``: 1 − Levenshtein ÷ max(len(piece), len(read run)), AnyText's normalised edit distance;
- ``word_precision``/``word_recall``/``word_f1``: MARIO-Eval's word-level figures, read words
  against target words; aggregated MARIO-Eval's way, from counts summed over images;
- ``reading_similarity``: 1 − min(edits, len) ÷ len between the piece and the whole reading, both
  with spaces removed, less the runs matched to the other pieces: every stray character read
  costs, so it rewards images that show the target and nothing else (the GRPO/PPO ``ocr``
  reward);
- ``flow_grpo_score``: Flow-GRPO's OCR reward as its ``ocr.py`` computes it, for comparisons:
  piece and whole reading lower-cased with spaces removed (none of ``TextNormalization``'s
  other steps), 1 when the piece occurs anywhere in the reading, else 1 − min(edits, len) ÷ len.
  Flow-GRPO's prompts quote one piece; with several, each is scored against the whole reading.

Each piece gets its own run of read words, and no read word serves two pieces (see
``assign_runs``): two quoted "SALE"s need "SALE" read twice.

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
        text = _strip_latin_accents(text) if self.ignore_accents else unicodedata.normalize("NFC", text)
        if self.ignore_case:
            text = text.casefold()
        if self.ignore_punctuation:
            # Punctuation and symbols vanish inside words ("don't" -> "dont", "$5" -> "5"), so a
            # reading that drops an apostrophe still matches; the OCR models often do.
            text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
        return text.split() if self.collapse_spaces else text.split(" ")


DEFAULT_NORMALIZATION = TextNormalization()


def _strip_latin_accents(text: str) -> str:
    """``text`` with the combining marks of Latin letters removed ("Café" -> "Cafe") and compatibility
    forms folded ("ﬁ" -> "fi", full-width "Ａ" -> "A"), then recomposed (NFC).

    Marks on other scripts are letters of their own there and stay: the voicing mark of "が" makes
    it another kana than "か", and Hangul syllables, decomposed into jamo on the way, are whole
    syllables again at the end (so a CER counts syllables, not jamo)."""
    kept = []
    latin_base = False
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            if latin_base:
                continue
        else:
            latin_base = unicodedata.name(ch, "").startswith("LATIN ")
        kept.append(ch)
    return unicodedata.normalize("NFC", "".join(kept))


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
    reading_similarity: float
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
    reading_similarity: float | None = None
    flow_grpo_score: float | None = None
    target_chars: int = 0
    target_words: int = 0
    read_words: int = 0
    matched_words: int = 0
    pieces: list[PieceScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


Run = tuple[int, int, int]  # (edits, start, end): the read words words[start:end]; start == end: none


def _ranked_runs(piece: str, words: list[str]) -> list[Run]:
    """Every run of ``words`` (and the empty run) as a candidate for ``piece``, best first.

    Best is the fewest edits between the piece and the run's words joined by spaces. Among runs
    with as few edits:
    - the empty run comes first when it is among them: a run no closer than reading nothing is
      not a reading of the piece;
    - then the longest run: it accounts for the most read text at the same cost, so "SALE" read
      as the letters "S A L E" is matched to all four (NED 1 − 3/7), not to "S" alone;
    - then the earliest run.
    """
    runs = [(len(piece), 0, 0)]
    for start in range(len(words)):
        for end in range(start + 1, len(words) + 1):
            runs.append((Levenshtein.distance(piece, " ".join(words[start:end])), start, end))
    return sorted(runs, key=lambda run: (run[0], run[1] != run[2], -(run[2] - run[1]), run[1]))


# Steps of the assignment search before it settles for the best assignment found so far (about a
# tenth of a second). Only readings where many pieces want the same few words reach it, such as
# six quoted "SALE"s with three read among twenty other words.
ASSIGNMENT_STEPS = 100_000


def assign_runs(pieces: list[str], words: list[str]) -> list[Run]:
    """One run of read ``words`` per piece, no word in two runs, with the fewest edits in total.

    Among assignments with as few edits, the first piece gets its best-ranked run (see
    ``_ranked_runs``), then the second, and so on; when no two pieces want the same words this is
    each piece's own best run. A depth-first search in that order, cut where the edits so far plus
    each remaining piece's unconstrained best cannot beat the best assignment found; its first
    assignment gives each piece in turn its best run still free, and past ``ASSIGNMENT_STEPS`` it
    keeps the best found (the same for the same input)."""
    ranked = [_ranked_runs(piece, words) for piece in pieces]
    floor = [ranked_runs[0][0] for ranked_runs in ranked]
    best: tuple[int, list[Run]] = (sum(len(p) for p in pieces) + 1, [])
    steps = 0

    def search(index: int, chosen: list[Run], used: set[int], edits: int) -> None:
        nonlocal best, steps
        if index == len(pieces):
            best = (edits, list(chosen))
            return
        remaining = sum(floor[index + 1 :])
        for run in ranked[index]:
            steps += 1
            if edits + run[0] + remaining >= best[0] or (steps > ASSIGNMENT_STEPS and best[1]):
                break  # runs are ranked by edits: no later one can do better
            taken = set(range(run[1], run[2]))
            if taken & used:
                continue
            chosen.append(run)
            search(index + 1, chosen, used | taken, edits + run[0])
            chosen.pop()

    search(0, [], set(), 0)
    return best[1]


def flow_grpo_reward(target: str, reading: str) -> float:
    """Flow-GRPO's OCR reward of ``reading`` for one quoted ``target``, as its ``ocr.py`` computes it:
    both lower-cased with spaces removed; 1 when the target occurs in the reading, else
    1 − min(Levenshtein, len(target)) ÷ len(target)."""
    target = target.replace(" ", "").lower()
    reading = reading.replace(" ", "").lower()
    if not target:
        raise ValueError("Flow-GRPO's reward needs a target with at least one character besides spaces")
    if target in reading:
        return 1.0
    return 1.0 - min(Levenshtein.distance(reading, target), len(target)) / len(target)


def score_text(
    targets: list[str] | str | None,
    reading: str,
    normalization: TextNormalization = DEFAULT_NORMALIZATION,
) -> TextScore:
    """Score one image's OCR ``reading`` against its target pieces (a list, one string, or None).

    With no target (None, or an empty list) the result has ``has_target=False`` and no figures.
    Otherwise each piece is scored against its own run of read words (``assign_runs``) and the
    image's figures combine them: CER over all target characters; NED, the reading similarity and
    the Flow-GRPO score as means over pieces; word figures over all target words.
    """
    if isinstance(targets, str):
        targets = [targets]
    targets = [t for t in (targets or []) if normalization.words(t)]
    read_words = normalization.words(reading)
    result = TextScore(targets=list(targets), reading=reading, has_target=bool(targets), read_words=len(read_words))
    if not targets:
        return result
    piece_words = [normalization.words(t) for t in targets]
    runs = assign_runs([" ".join(words) for words in piece_words], read_words)
    for index, (target, words, (edits, start, end)) in enumerate(zip(targets, piece_words, runs)):
        piece = " ".join(words)
        matched = " ".join(read_words[start:end])
        others = {i for j, (_, s, e) in enumerate(runs) if j != index for i in range(s, e)}
        rest = "".join(w for i, w in enumerate(read_words) if i not in others)
        compact = piece.replace(" ", "")
        rest_edits = min(Levenshtein.distance(compact, rest), len(compact))
        result.pieces.append(
            PieceScore(
                target=piece,
                matched=matched,
                exact=edits == 0,
                edits=edits,
                cer=edits / len(piece),
                ned=1.0 - edits / max(len(piece), len(matched)),
                reading_similarity=1.0 - rest_edits / len(compact),
                flow_grpo_score=flow_grpo_reward(target, reading),
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
    result.reading_similarity = sum(p.reading_similarity for p in result.pieces) / len(result.pieces)
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


MEAN_FIGURES = ("exact_match", "word_accuracy", "ned", "reading_similarity", "flow_grpo_score")


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
