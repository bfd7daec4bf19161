"""The data contracts between the parts: one reader and one writer per file, documented in docs/formats.md.

Every part hands the next one plain files, so each can be built, tested and replaced alone:

* a **candidate set**: a folder with ``candidates.parquet`` and ``images/`` (generation writes it;
  labeling, reward, align and eval read it);
* **preference data**: ``annotations.parquet`` (one judgment per row, screen sides left/right) and
  ``pairs.parquet`` (one pair per row, votes per axis in the stable a/b order);
* a **scores file**: a reward model's view per pair or per candidate (parquet or CSV);
* a **prompts file**: one prompt a line, plain text or JSONL;
* an **edits file**: one instruction a line for a candidate of a source set, JSONL.

Edits travel through the same contracts: an edited image's row in a candidate set names its
``source_candidate`` (another row of the set) and its ``instruction``, and preference data about
edits carries both columns too.

Readers check that the file exists, that the columns the contract requires are there and that
their values have the right types; a problem is one ``BadInputError`` naming the file, the column
and the row (counted from 0, as pandas does). Writers check the same before writing and write
through a temporary file and a rename, so a reader never sees half a file.

This module imports only pandas, pyarrow and the standard library: labeling uses it without torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import pandas as pd

from imagepref.errors import BadInputError
from imagepref.files import replaced_on_success

# The judgment axes of the built-in study, in head order.
AXES = ("aesthetics", "prompt_fidelity", "safety")
# The axes of a study that compares edits of one source by one instruction.
EDIT_AXES = ("instruction_fidelity", "preservation", "aesthetics", "safety")
# What a pair's axis can come out as, in the stable a/b order.
OUTCOMES = ("a", "b", "tie")
# What an annotator answers, in screen sides.
SIDES = ("left", "right", "tie")

CANDIDATES_FILE = "candidates.parquet"
IMAGES_DIR = "images"
CANDIDATE_COLUMNS = ("candidate_id", "prompt_id", "prompt", "image_path")
# An edited image's source (a candidate of the same set) and the instruction it followed; present
# together or not at all, and empty on the rows that are no edit (the sources themselves).
EDIT_COLUMNS = ("source_candidate", "instruction")

ANNOTATIONS_FILE = "annotations.parquet"
PAIRS_FILE = "pairs.parquet"
GOLD_FILE = "gold.parquet"
ANNOTATION_COLUMNS = ("pair_id", "prompt", "candidate_left", "candidate_right", "annotator", "source")
ANNOTATION_TAIL = ("lead_time", "created_at")
PAIR_COLUMNS = ("pair_id", "prompt", "candidate_a", "candidate_b")


# --- tables ---------------------------------------------------------------------------------------


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A parquet file (or CSV, by suffix) that exists, or one ``BadInputError``."""
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as error:  # pyarrow and pandas raise several types for a damaged file
        kind = "CSV" if path.suffix.lower() == ".csv" else "parquet"
        raise BadInputError(f"{what} {path} is not a readable {kind} file ({type(error).__name__})") from None


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as parquet (CSV when ``path`` ends in .csv) through a temporary file and a
    rename, without the index."""
    path = Path(path)
    with replaced_on_success(path) as temporary:
        if path.suffix.lower() == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)


def _missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _problem(path: Path, column: str, row: int, text: str) -> BadInputError:
    return BadInputError(f"{path}: column {column}, row {row}: {text}")


def _require_columns(frame: pd.DataFrame, path: Path, columns: Iterable[str], why: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise BadInputError(f"{path} lacks the column(s) {', '.join(missing)} {why}")


def _ids(frame: pd.DataFrame, path: Path, columns: Iterable[str]) -> pd.DataFrame:
    """``columns`` as strings; a missing value is an error naming its row (ids may be numbers in a
    hand-made file, as long as every row has one)."""
    changes = {}
    for column in columns:
        values = frame[column].tolist()
        for row, value in enumerate(values):
            if _missing(value):
                raise _problem(path, column, row, "is empty; every row needs a value")
            if not isinstance(value, (str, Integral)) or isinstance(value, bool):
                raise _problem(path, column, row, f"is a {type(value).__name__} ({value!r}); expected text")
        changes[column] = [str(value) for value in values]
    return frame.assign(**changes)


def _unique(frame: pd.DataFrame, path: Path, column: str, what: str) -> None:
    duplicated = frame[column].duplicated()
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        raise _problem(path, column, row, f"{what} {frame[column].iloc[row]!r} appears twice; {what}s must be unique")


def _numbers(
    frame: pd.DataFrame,
    path: Path,
    columns: Iterable[str],
    whole: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> None:
    """Each of ``columns`` holds numbers (missing values allowed), whole ones when ``whole``, within
    [low, high] when given."""

    def fits(value: object) -> bool:
        if _missing(value):
            return True
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
            return False
        return (
            (not whole or float(value).is_integer())
            and (low is None or value >= low)
            and (high is None or value <= high)
        )

    kind = "a whole number" if whole else "a number"
    if low is not None or high is not None:
        kind += f" in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    for column in columns:
        for row, value in enumerate(frame[column].tolist()):
            if not fits(value):
                raise _problem(path, column, row, f"is {value!r}; expected {kind}")


def _choices(frame: pd.DataFrame, path: Path, columns: Iterable[str], allowed: Sequence[str]) -> None:
    for column in columns:
        # A plain list: Series.map on a string-dtype column keeps the string dtype (all-missing
        # labels before anyone voted), where a reduction such as any() raises.
        bad = [not _missing(v) and v not in allowed for v in frame[column].tolist()]
        if any(bad):
            row = bad.index(True)
            raise _problem(
                path, column, row, f"is {frame[column].iloc[row]!r}; expected one of {', '.join(allowed)} or empty"
            )


# --- candidate sets -------------------------------------------------------------------------------


def _is_token_list(value: object) -> bool:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return False
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return getattr(value, "ndim", 1) == 1 and dtype.kind in "iu"
    return all(isinstance(item, Integral) and not isinstance(item, bool) for item in value)  # type: ignore[union-attr]


def _check_candidates(table: pd.DataFrame, path: Path, folder: Path, columns: Sequence[str], why: str) -> pd.DataFrame:
    _require_columns(table, path, CANDIDATE_COLUMNS, "that the candidate-set contract requires")
    _require_columns(table, path, [c for c in columns if c not in CANDIDATE_COLUMNS], why)
    if table.empty:
        raise BadInputError(f"candidate set {folder} is empty: {CANDIDATES_FILE} has no rows")
    table = _ids(table, path, CANDIDATE_COLUMNS)
    _unique(table, path, "candidate_id", "candidate id")
    if "image_tokens" in table.columns:
        for row, value in enumerate(table["image_tokens"]):
            if not _is_token_list(value):
                shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
                raise _problem(
                    path,
                    "image_tokens",
                    row,
                    f"is {shown}; expected a list of integers (the generator's "
                    "image tokens); regenerate the set with `imagepref generate`",
                )
    table = _check_edit_columns(table, path, set(table["candidate_id"]))
    images = (folder / IMAGES_DIR).resolve()
    for row, relative in enumerate(table["image_path"]):
        if images not in (folder / relative).resolve().parents:
            raise _problem(
                path,
                "image_path",
                row,
                f"{relative!r} lies outside {images}; candidate images must be inside the set's images/ folder",
            )
    return table


def _check_edit_columns(table: pd.DataFrame, path: Path, candidates: set[str] | None = None) -> pd.DataFrame:
    """The edit columns (``EDIT_COLUMNS``), where a table has them: both there, on each row both
    empty or both text, and, with ``candidates``, each source one of those candidates (not the
    row itself). Returns the table with the sources as text."""
    present = [column for column in EDIT_COLUMNS if column in table.columns]
    if not present:
        return table
    _require_columns(table, path, EDIT_COLUMNS, "that an edit needs (its source and its instruction together)")
    sources, instructions = table["source_candidate"].tolist(), table["instruction"].tolist()
    own = table["candidate_id"].tolist() if "candidate_id" in table.columns else [None] * len(table)
    for row, (source, instruction) in enumerate(zip(sources, instructions)):
        empty_source = _missing(source) or source == ""
        empty_instruction = _missing(instruction) or (isinstance(instruction, str) and not instruction.strip())
        if not empty_instruction and not isinstance(instruction, str):
            raise _problem(path, "instruction", row, f"is {instruction!r}; expected text")
        if empty_source != empty_instruction:
            column, what = (
                ("source_candidate", "an instruction needs a source")
                if empty_source
                else (
                    "instruction",
                    "a source needs an instruction",
                )
            )
            raise _problem(path, column, row, f"is empty: {what}; give both or neither")
        if empty_source:
            sources[row] = None
            continue
        if not isinstance(source, (str, Integral)) or isinstance(source, bool):
            raise _problem(path, "source_candidate", row, f"is {source!r}; expected a candidate id")
        sources[row] = str(source)
        if candidates is not None and (sources[row] not in candidates or sources[row] == own[row]):
            raise _problem(
                path,
                "source_candidate",
                row,
                f"{sources[row]!r} is not another candidate of this set; an edit's source image must be in the set",
            )
    return table.assign(source_candidate=pd.Series(sources, index=table.index, dtype="object"))


def read_candidate_set(folder: str | Path, columns: Sequence[str] = (), why: str = "") -> pd.DataFrame:
    """A checked candidate set's table, indexed by ``candidate_id`` (kept as a column), with
    ``image_file``, each image's absolute path.

    Checked: ``candidates.parquet`` exists and reads, has the contract's columns (and ``columns``,
    which the caller needs ``why``), at least one row, text ids, unique candidate ids, images under
    ``images/`` and, where the column is there, ``image_tokens`` a list of integers per row. The
    images themselves are not opened: ``check_images`` does that for the ones a caller uses.
    """
    folder = Path(folder).resolve()
    path = folder / CANDIDATES_FILE
    if not path.is_file():
        raise BadInputError(
            f"{folder} is not a candidate set ({CANDIDATES_FILE} is missing); make one with "
            "`imagepref generate` and pass its folder"
        )
    table = _check_candidates(_read_table(path, "candidate set table"), path, folder, columns, why)
    table = table.assign(image_file=[str(folder / relative) for relative in table["image_path"]])
    return table.set_index("candidate_id", drop=False)


def read_candidate_sets(folders: Sequence[str | Path], columns: Sequence[str] = (), why: str = "") -> pd.DataFrame:
    """Every candidate of one or more sets (``read_candidate_set`` each), in one table; a candidate
    id in two sets is an error."""
    if not folders:
        raise BadInputError("no candidate sets given: pass --candidates DIR (the sets the pairs were made from)")
    tables = [read_candidate_set(folder, columns, why) for folder in folders]
    table = pd.concat(tables) if len(tables) > 1 else tables[0]
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        raise BadInputError(
            f"candidate id {duplicated[0]!r} appears in more than one candidate set; pass each set once"
        )
    return table


def check_images(table: pd.DataFrame, ids: Iterable[str] | None = None) -> None:
    """Raise ``BadInputError`` unless the image of every candidate in ``ids`` (default: all) of a
    ``read_candidate_set`` table is on disk and is an image file (PIL knows its format)."""
    from PIL import Image, UnidentifiedImageError

    ids = table.index if ids is None else ids
    absent = [candidate for candidate in ids if not Path(table.at[candidate, "image_file"]).is_file()]
    if absent:
        raise BadInputError(
            f"{len(absent)} candidate image(s) are missing on disk (e.g. "
            f"{table.at[absent[0], 'image_file']}); regenerate the set or restore its images/"
        )
    for candidate in ids:
        # Opening reads the header only: a file that is no image fails here, not mid-training.
        try:
            Image.open(table.at[candidate, "image_file"]).close()
        except (UnidentifiedImageError, OSError) as error:
            raise BadInputError(
                f"candidate image {table.at[candidate, 'image_file']} is not an image ({type(error).__name__}); "
                "regenerate the set or restore its images/"
            ) from None


def candidate_id_for(prompt_id: str, sample: int, seed: int, prompt: str, image_tokens: Iterable[int]) -> str:
    """The id ``imagepref generate`` gives a candidate: ``<prompt_id>-<sample>-s<seed>-<digest>``.

    The digest (8 hex characters of SHA-256) covers the prompt text and the image tokens, so two
    candidate sets share an id only when they hold the same image for the same prompt: sets drawn
    from two prompts files, or by two checkpoints with the same seed, never collide, and a pair of
    the same two images is one pair wherever it comes from."""
    content = prompt.encode("utf-8") + b"\x1f" + ",".join(str(int(code)) for code in image_tokens).encode()
    return f"{prompt_id}-{sample}-s{seed}-{hashlib.sha256(content).hexdigest()[:8]}"


def write_candidate_table(records: Sequence[dict[str, Any]] | pd.DataFrame, folder: str | Path) -> pd.DataFrame:
    """Check candidate rows against the contract and write them as ``<folder>/candidates.parquet``
    (the images must be in ``<folder>/images/`` already; write into a staged folder, see
    ``imagepref.files.staged_folder``). Returns the table written."""
    folder = Path(folder)
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    path = folder / CANDIDATES_FILE
    _check_candidates(frame, path, folder.resolve(), (), "")
    write_table(frame, path)
    return frame


# --- preference data ------------------------------------------------------------------------------


def annotation_columns(axes: Sequence[str], edits: bool = False) -> list[str]:
    """The columns of annotations.parquet in contract order (with ``edits``, the edit columns
    after the candidates)."""
    return [*ANNOTATION_COLUMNS[:4], *(EDIT_COLUMNS if edits else ()), *ANNOTATION_COLUMNS[4:], *axes, *ANNOTATION_TAIL]


def pair_columns(axes: Sequence[str], edits: bool = False) -> list[str]:
    """The columns of pairs.parquet in contract order (with ``edits``, the edit columns after the
    candidates)."""
    columns = [*PAIR_COLUMNS, *(EDIT_COLUMNS if edits else ())]
    for axis in axes:
        columns += [f"{axis}_votes_a", f"{axis}_votes_b", f"{axis}_votes_tie", f"{axis}_label"]
    return columns


def pair_axes(pairs: pd.DataFrame) -> list[str]:
    """The axes a pairs table carries (every ``<axis>_votes_a`` column), in column order."""
    return [column[: -len("_votes_a")] for column in pairs.columns if column.endswith("_votes_a")]


def majority(votes: dict[str, int]) -> str | None:
    """The answer with strictly the most votes, or None without one."""
    ranked = sorted(votes.items(), key=lambda item: -item[1])
    if not ranked or ranked[0][1] == 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]


def _check_pairs(pairs: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require_columns(pairs, path, PAIR_COLUMNS, "that the preference-data contract requires")
    pairs = _ids(pairs, path, ("pair_id", "candidate_a", "candidate_b"))
    _unique(pairs, path, "pair_id", "pair id")
    axes = pair_axes(pairs)
    _numbers(
        pairs,
        path,
        [f"{axis}_votes_{o}" for axis in axes for o in OUTCOMES if f"{axis}_votes_{o}" in pairs],
        whole=True,
        low=0,
    )
    _choices(pairs, path, [f"{axis}_label" for axis in axes if f"{axis}_label" in pairs], OUTCOMES)
    return _check_edit_columns(pairs, path)


def _check_annotations(annotations: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require_columns(
        annotations,
        path,
        ("pair_id", "candidate_left", "candidate_right", "annotator"),
        "that the preference-data contract requires",
    )
    annotations = _ids(annotations, path, ("pair_id", "candidate_left", "candidate_right", "annotator"))
    return _check_edit_columns(annotations, path)


def _read_preference_file(folder: str | Path, name: str) -> tuple[pd.DataFrame, Path]:
    folder = Path(folder)
    path = folder / name
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise BadInputError(
            f"preference folder {folder} {state}; pass the folder `imagepref label pull --out DIR` wrote"
        )
    if not path.is_file():
        raise BadInputError(
            f"{folder} is not preference data ({name} is missing); make it with `imagepref label pull --out DIR`"
        )
    return _read_table(path, "preference table"), path


def refuse_existing_preferences(folder: str | Path) -> None:
    """A folder that already holds a pairs table is not overwritten by new preference data."""
    if (Path(folder) / PAIRS_FILE).exists():
        raise BadInputError(f"{folder} already holds preference data; choose another --out")


def read_pairs(folder: str | Path) -> pd.DataFrame:
    """A checked ``pairs.parquet``: the contract's columns, text ids, unique pair ids, whole
    non-negative vote counts and labels among a / b / tie (or empty). May have no rows."""
    return _check_pairs(*_read_preference_file(folder, PAIRS_FILE))


def compares_edits(pairs: pd.DataFrame) -> bool:
    """Whether preference data compares edits: its pairs carry the edit columns (``EDIT_COLUMNS``),
    so a trainer must read each pair in its edit turn, not as images from a prompt."""
    return "instruction" in pairs.columns


def read_annotations(folder: str | Path, name: str = ANNOTATIONS_FILE) -> pd.DataFrame:
    """A checked ``annotations.parquet`` (or ``gold.parquet`` with ``name``): the judgment columns
    and text ids."""
    return _check_annotations(*_read_preference_file(folder, name))


def write_pairs(pairs: pd.DataFrame, folder: str | Path) -> None:
    """Check a pairs table against the contract and write it as ``<folder>/pairs.parquet``."""
    path = Path(folder) / PAIRS_FILE
    _check_pairs(pairs, path)
    write_table(pairs, path)


def write_annotations(annotations: pd.DataFrame, folder: str | Path, name: str = ANNOTATIONS_FILE) -> None:
    """Check a judgments table against the contract and write it as ``<folder>/annotations.parquet``
    (or ``name``, e.g. ``gold.parquet``)."""
    path = Path(folder) / name
    _check_annotations(annotations, path)
    write_table(annotations, path)


def read_known_answers(path: str | Path, axes: Sequence[str]) -> pd.DataFrame:
    """A checked known-answer (gold) file, parquet or CSV: ``candidate_a``, ``candidate_b`` and per
    axis the known answer ``a``, ``b`` or ``tie`` in that column order (empty: not checked)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"gold file {path} does not exist")
    table = _read_table(path, "gold file")
    _require_columns(table, path, ("candidate_a", "candidate_b"), "that a gold file needs")
    table = _ids(table, path, ("candidate_a", "candidate_b"))
    _choices(table, path, [axis for axis in axes if axis in table.columns], OUTCOMES)
    return table


# --- scores ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoresTable:
    """A checked scores file: ``per_pair`` tells its shape; ``axes`` are the score axes it has."""

    table: pd.DataFrame
    per_pair: bool
    axes: list[str]


def _as_numbers(table: pd.DataFrame, path: Path, columns: Sequence[str]) -> pd.DataFrame:
    # CSV has no types: a column with one word in it reads as text, so its numbers are text too.
    if path.suffix.lower() != ".csv":
        return table
    changes = {}
    for column in columns:
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = numbers.isna() & table[column].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise _problem(path, column, row, f"is {table[column].iloc[row]!r}; expected a number")
        changes[column] = numbers
    return table.assign(**changes)


def _check_scores(table: pd.DataFrame, path: Path, axes: Sequence[str]) -> ScoresTable:
    if {"candidate_a", "candidate_b"} <= set(table.columns):
        table = _ids(table, path, ("candidate_a", "candidate_b"))
        present = [axis for axis in axes if f"{axis}_p_a" in table.columns]
        spread = [name for name in ("uncertainty", "disagreement") if name in table.columns]
        table = _as_numbers(table, path, [f"{axis}_p_a" for axis in present] + spread)
        _numbers(table, path, [f"{axis}_p_a" for axis in present], low=0.0, high=1.0)
        _numbers(table, path, spread, low=0.0)
        return ScoresTable(table, True, present)
    present = [axis for axis in axes if axis in table.columns]
    if "candidate_id" not in table.columns or not present:
        raise BadInputError(
            f"scores file {path} needs candidate_a, candidate_b (per pair) or candidate_id plus "
            f"one column per axis ({', '.join(axes)}) (per candidate)"
        )
    table = _ids(table, path, ("candidate_id",))
    _unique(table, path, "candidate_id", "candidate id")
    table = _as_numbers(table, path, present)
    _numbers(table, path, present)
    return ScoresTable(table, False, present)


def read_scores(path: str | Path, axes: Sequence[str]) -> ScoresTable:
    """A checked scores file (parquet, or CSV by suffix) of either shape: per pair
    (``candidate_a``, ``candidate_b``, optional ``<axis>_p_a`` in [0, 1], ``uncertainty``,
    ``disagreement``) or per candidate (``candidate_id`` and a numeric column per axis)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"scores file {path} does not exist; pass the file the reward model wrote")
    return _check_scores(_read_table(path, "scores file"), path, axes)


def write_scores(table: pd.DataFrame, path: str | Path, axes: Sequence[str]) -> None:
    """Check a scores table (either shape, for ``axes``) and write it, CSV when ``path`` ends in
    .csv, parquet otherwise."""
    path = Path(path)
    if len(table):
        _check_scores(table, path, axes)
    write_table(table, path)


# --- prompts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One line of a prompts file: its id, text, the target pieces it names (None: not given, the
    quoted pieces count) and any other fields of its JSON object."""

    prompt_id: str
    prompt: str
    target: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _prompt(record: dict[str, Any], number: int, where: str) -> Prompt:
    text = record.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(
            f'{where} is not a JSON object with a "prompt" field (it needs a non-empty "prompt" '
            "string); fix or delete that line"
        )
    target = record.get("target")
    if isinstance(target, str):
        target = [target] if target.strip() else []
    elif isinstance(target, list) and all(isinstance(piece, str) for piece in target):
        target = [piece for piece in target if piece.strip()]
    elif target is not None:
        raise BadInputError(f'{where}: "target" must be a string or a list of strings; fix or delete that line')
    # Line numbers give the default ids (``p3`` for line 3): candidate ids and image names derive
    # from them, so an edit elsewhere in the file leaves a prompt's id alone.
    prompt_id = str(record.get("prompt_id") or record.get("id") or f"p{number}")
    metadata = {key: value for key, value in record.items() if key not in ("prompt", "target", "prompt_id", "id")}
    return Prompt(prompt_id, text.strip(), target, metadata)


def content_lines(text: str) -> Iterator[tuple[int, str]]:
    """The numbered lines of a user's file (numbers from 1) that say something: stripped, blank
    lines and lines starting with ``#`` skipped."""
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_prompts(text: str, source: str, jsonl: bool) -> list[Prompt]:
    """The prompts of a prompts file's text: JSONL (one ``{"prompt": ...}`` object a line) when
    ``jsonl``, else one prompt a line, where a line that starts with ``{`` is read as such an
    object. Blank lines and lines starting with ``#`` are skipped; ids must be unique."""
    prompts: list[Prompt] = []
    for number, line in content_lines(text):
        where = f"{source} line {number}"
        if jsonl or line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadInputError(f"{where} is not valid JSON ({error.msg}); fix or delete that line") from None
            if not isinstance(record, dict):
                raise BadInputError(f'{where} is not a JSON object like {{"prompt": "..."}}; fix or delete that line')
        else:
            record = {"prompt": line}
        prompts.append(_prompt(record, number, where))
    if not prompts:
        raise BadInputError(
            f'{source} has no usable line and so has no prompts; write one prompt per line (JSONL: {{"prompt": "..."}})'
        )
    seen: set[str] = set()
    for prompt in prompts:
        if prompt.prompt_id in seen:
            raise BadInputError(f"{source}: prompt_id {prompt.prompt_id!r} appears twice; make the ids unique")
        seen.add(prompt.prompt_id)
    return prompts


def read_prompts(path: str | Path) -> list[Prompt]:
    """The prompts of a file: ``.jsonl`` / ``.json`` as JSONL, anything else as text (see
    ``parse_prompts``)."""
    path = Path(path)
    text = read_text_file(path, "prompts file", "a text or JSONL file, one prompt a line")
    return parse_prompts(text, f"prompts file {path}", jsonl=path.suffix in (".jsonl", ".json"))


def read_text_file(path: Path, what: str, expected: str) -> str:
    """The UTF-8 text of a user's input file (``what``: "prompts file", ...), refused in one line
    when it is a folder, missing, not UTF-8 or holds NUL bytes; ``expected`` says what to pass."""
    if path.is_dir():
        raise BadInputError(f"{what} {path} is a folder; pass {expected}")
    if not path.is_file():
        raise BadInputError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise BadInputError(f"{what} {path} line {line} holds NUL bytes; it is no text file, save it as UTF-8 text")
    return text


# --- edits ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditRequest:
    """One line of an edits file: its id, the candidate to edit (of the source set) and the
    instruction."""

    edit_id: str
    source: str
    instruction: str


def read_edit_requests(path: str | Path) -> list[EditRequest]:
    """The edits of an edits file: JSONL, one ``{"source": CANDIDATE_ID, "instruction": TEXT}``
    object a line (``id`` optional, default ``e<line number>``); blank lines and lines starting
    with ``#`` are skipped, ids must be unique."""
    path = Path(path)
    text = read_text_file(path, "edits file", "a JSONL file, one edit a line")
    edits: list[EditRequest] = []
    for number, line in content_lines(text):
        where = f"edits file {path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadInputError(f"{where} is not valid JSON ({error.msg}); fix or delete that line") from None
        if not isinstance(record, dict):
            raise BadInputError(f'{where} is not a JSON object like {{"source": "...", "instruction": "..."}}')
        instruction, source = record.get("instruction"), record.get("source")
        if not isinstance(instruction, str) or not instruction.strip():
            raise BadInputError(f'{where} has no "instruction": say what to change')
        if not isinstance(source, str) or not source.strip():
            raise BadInputError(
                f'{where}: an instruction needs a source: give "source", the candidate id of the image to edit'
            )
        extra = set(record) - {"id", "source", "instruction"}
        if extra:
            raise BadInputError(
                f"{where} has an unknown field {sorted(extra)[0]!r}; an edit has id, source, instruction"
            )
        edits.append(EditRequest(str(record.get("id") or f"e{number}"), source.strip(), " ".join(instruction.split())))
    if not edits:
        raise BadInputError(f'edits file {path} has no edits; write one {{"source": ..., "instruction": ...}} a line')
    seen: set[str] = set()
    for edit in edits:
        if edit.edit_id in seen:
            raise BadInputError(f"edits file {path}: id {edit.edit_id!r} appears twice; make the ids unique")
        seen.add(edit.edit_id)
    return edits
