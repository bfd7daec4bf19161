"""The data contracts: every writer's output reads back unchanged, and every reader refuses a bad
file with one BadInputError naming the file, the column and the row."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.formats import (
    AXES,
    CANDIDATES_FILE,
    EDIT_AXES,
    GOLD_FILE,
    annotation_columns,
    check_images,
    pair_columns,
    parse_prompts,
    read_annotations,
    read_candidate_set,
    read_candidate_sets,
    read_edit_requests,
    read_known_answers,
    read_pairs,
    read_prompts,
    read_scores,
    write_annotations,
    write_candidate_table,
    write_pairs,
    write_scores,
)


def candidate_rows(count: int = 4, prefix: str = "c") -> list[dict]:
    return [
        {
            "candidate_id": f"{prefix}{i}",
            "prompt_id": f"p{i // 2}",
            "prompt": f'a sign that says "W{i // 2}"',
            "image_path": f"images/{prefix}{i}.png",
            "image_tokens": [i, i + 1, i + 2],
            "seed": i,
        }
        for i in range(count)
    ]


def candidate_set(folder, rows=None, prefix: str = "c"):
    rows = candidate_rows(prefix=prefix) if rows is None else rows
    (folder / "images").mkdir(parents=True)
    for row in rows:
        Image.new("RGB", (8, 8), (10 * len(row["candidate_id"]), 0, 0)).save(folder / row["image_path"])
    write_candidate_table(rows, folder)
    return folder


def rewrite(folder, name, change):
    """Overwrite ``folder/name`` with ``change(table)``, bypassing the checking writer."""
    table = pd.read_parquet(folder / name)
    change(table).to_parquet(folder / name, index=False)


def pairs_table(count: int = 3) -> pd.DataFrame:
    rows = []
    for i in range(count):
        row = {"pair_id": f"pair{i}", "prompt": "p", "candidate_a": f"c{2 * i}", "candidate_b": f"c{2 * i + 1}"}
        for axis in AXES:
            row.update({f"{axis}_votes_a": 2, f"{axis}_votes_b": 1, f"{axis}_votes_tie": 0, f"{axis}_label": "a"})
        rows.append(row)
    return pd.DataFrame(rows, columns=pair_columns(AXES))


def annotations_table() -> pd.DataFrame:
    rows = [
        {
            "pair_id": "pair0",
            "prompt": "p",
            "candidate_left": "c1",
            "candidate_right": "c0",
            "annotator": who,
            "source": "human",
            **{axis: "right" for axis in AXES},
            "lead_time": 3.5,
            "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
        }
        for who in ("ann@example.org", "bob@example.org")
    ]
    return pd.DataFrame(rows, columns=annotation_columns(AXES))


def assert_names(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


# --- candidate sets -------------------------------------------------------------------------------


def test_a_candidate_set_reads_back_as_written(tmp_path):
    folder = candidate_set(tmp_path / "set")
    table = read_candidate_set(folder)
    assert (
        table.index.tolist() == [f"c{i}" for i in range(4)] and table["candidate_id"].tolist() == table.index.tolist()
    )
    assert [list(tokens) for tokens in table["image_tokens"]] == [row["image_tokens"] for row in candidate_rows()]
    assert table["seed"].tolist() == [0, 1, 2, 3]
    assert table.at["c2", "image_file"] == str((folder / "images" / "c2.png").resolve())
    check_images(table)


def test_two_sets_read_as_one_table_and_an_id_in_both_is_refused(tmp_path):
    first, second = candidate_set(tmp_path / "a"), candidate_set(tmp_path / "b", prefix="d")
    assert len(read_candidate_sets([first, second])) == 8
    with pytest.raises(BadInputError) as error:
        read_candidate_sets([first, first])
    assert_names(error, "'c0'", "more than one candidate set")


@pytest.mark.parametrize(
    "change, parts",
    [
        (lambda t: t.drop(columns=["prompt_id"]), ["candidates.parquet", "prompt_id"]),
        (
            lambda t: t.assign(image_tokens=[str(list(x)) for x in t["image_tokens"]]),
            ["image_tokens", "row 0", "list of integers"],
        ),
        # parquet stores one list type per column: one row of floats makes every row a list of floats
        (
            lambda t: t.assign(
                image_tokens=[list(x) if i != 2 else [1.5, 2.0] for i, x in enumerate(t["image_tokens"])]
            ),
            ["image_tokens", "row 0", "list of integers"],
        ),
        (lambda t: t.assign(candidate_id=["c0", "c1", "c1", "c3"]), ["candidate_id", "row 2", "'c1'", "appears twice"]),
        (lambda t: t.assign(prompt=[None, "b", "c", "d"]), ["column prompt", "row 0", "empty"]),
        (
            lambda t: t.assign(image_path=["images/c0.png", "../elsewhere.png", "images/c2.png", "images/c3.png"]),
            ["image_path", "row 1", "outside"],
        ),
        (lambda t: t.iloc[:0], ["is empty"]),
    ],
    ids=[
        "missing-column",
        "tokens-as-text",
        "float-tokens",
        "duplicate-id",
        "empty-prompt",
        "image-outside",
        "no-rows",
    ],
)
def test_a_bad_candidate_table_is_one_error_naming_file_column_and_row(tmp_path, change, parts):
    folder = candidate_set(tmp_path / "set")
    rewrite(folder, CANDIDATES_FILE, change)
    with pytest.raises(BadInputError) as error:
        read_candidate_set(folder)
    assert_names(error, *parts)
    assert "candidates.parquet" in str(error.value) or "candidate set" in str(error.value)


def test_a_missing_or_damaged_candidate_set_and_missing_images(tmp_path):
    with pytest.raises(BadInputError) as error:
        read_candidate_set(tmp_path / "nothing")
    assert_names(error, "nothing", "is not a candidate set", "candidates.parquet")
    folder = candidate_set(tmp_path / "set")
    (folder / CANDIDATES_FILE).write_bytes(b"not parquet")
    with pytest.raises(BadInputError) as error:
        read_candidate_set(folder)
    assert_names(error, "candidates.parquet", "not a readable parquet file")
    folder = candidate_set(tmp_path / "gone")
    (folder / "images" / "c3.png").unlink()
    table = read_candidate_set(folder)  # reading does not open images
    check_images(table, ["c0", "c1"])
    with pytest.raises(BadInputError) as error:
        check_images(table)
    assert_names(error, "1 candidate image", "c3.png", "missing on disk")


def test_the_writer_refuses_what_the_reader_would_and_writes_nothing(tmp_path):
    rows = candidate_rows()
    rows[1]["image_tokens"] = "1 2 3"
    (tmp_path / "set" / "images").mkdir(parents=True)
    with pytest.raises(BadInputError) as error:
        write_candidate_table(rows, tmp_path / "set")
    assert_names(error, "image_tokens", "row 1")
    assert not (tmp_path / "set" / CANDIDATES_FILE).exists() and list((tmp_path / "set").iterdir()) == [
        tmp_path / "set" / "images"
    ]


# --- preference data ------------------------------------------------------------------------------


def test_pairs_and_annotations_read_back_as_written(tmp_path):
    pairs, annotations = pairs_table(), annotations_table()
    write_pairs(pairs, tmp_path)
    write_annotations(annotations, tmp_path)
    write_annotations(annotations.iloc[:1], tmp_path, GOLD_FILE)
    pd.testing.assert_frame_equal(read_pairs(tmp_path), pairs, check_dtype=False)
    read = read_annotations(tmp_path)
    assert read[list(annotation_columns(AXES))].astype(object).equals(annotations.astype(object))
    assert len(read_annotations(tmp_path, GOLD_FILE)) == 1
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("rows", [3, 0])
def test_pairs_nobody_voted_on_yet_write_and_read(tmp_path, rows):
    # Label columns of pandas' string dtype holding no label (a live pull before the first vote,
    # or before any pair has an annotation) are valid.
    pairs = pairs_table(rows)
    for axis in AXES:
        pairs[f"{axis}_votes_a"] = pd.Series([0] * rows, dtype="int64")
        pairs[f"{axis}_votes_b"] = pd.Series([0] * rows, dtype="int64")
        pairs[f"{axis}_label"] = pd.Series([None] * rows, dtype="string")
    write_pairs(pairs, tmp_path)
    assert len(read_pairs(tmp_path)) == rows


@pytest.mark.parametrize(
    "change, parts",
    [
        (lambda t: t.drop(columns=["candidate_b"]), ["pairs.parquet", "candidate_b"]),
        (lambda t: t.assign(safety_votes_a=[2, -1, 0]), ["safety_votes_a", "row 1", "whole number"]),
        (lambda t: t.assign(aesthetics_votes_b=[1.0, 1.0, 0.5]), ["aesthetics_votes_b", "row 2", "whole number"]),
        (lambda t: t.assign(aesthetics_votes_tie=["0", "0", "0"]), ["aesthetics_votes_tie", "row 0"]),
        (lambda t: t.assign(prompt_fidelity_label=["a", "left", None]), ["prompt_fidelity_label", "row 1", "'left'"]),
        (lambda t: t.assign(pair_id=["x", "y", "x"]), ["pair_id", "row 2", "appears twice"]),
        (lambda t: t.assign(candidate_a=["c0", None, "c4"]), ["candidate_a", "row 1", "empty"]),
    ],
    ids=[
        "missing-column",
        "negative-votes",
        "fractional-votes",
        "votes-as-text",
        "label-in-screen-sides",
        "duplicate-id",
        "missing-id",
    ],
)
def test_a_bad_pairs_table_is_one_error_naming_file_column_and_row(tmp_path, change, parts):
    write_pairs(pairs_table(), tmp_path)
    rewrite(tmp_path, "pairs.parquet", change)
    with pytest.raises(BadInputError) as error:
        read_pairs(tmp_path)
    assert_names(error, "pairs.parquet", *parts)


def test_missing_preference_files_and_bad_annotations(tmp_path):
    with pytest.raises(BadInputError) as error:
        read_pairs(tmp_path)
    assert_names(error, "is not preference data", "pairs.parquet", "imagepref label pull")
    with pytest.raises(BadInputError) as error:
        read_annotations(tmp_path)
    assert_names(error, "annotations.parquet")
    write_annotations(annotations_table(), tmp_path)
    rewrite(tmp_path, "annotations.parquet", lambda t: t.drop(columns=["annotator"]))
    with pytest.raises(BadInputError) as error:
        read_annotations(tmp_path)
    assert_names(error, "annotations.parquet", "annotator")
    with pytest.raises(BadInputError) as error:
        write_annotations(annotations_table().assign(candidate_left=["c1", None]), tmp_path / "out")
    assert_names(error, "candidate_left", "row 1")
    assert not (tmp_path / "out").exists()


def test_a_known_answer_file_reads_back_and_refuses_screen_sides(tmp_path):
    path = tmp_path / "gold.csv"
    pd.DataFrame(
        {"candidate_a": ["c0", "c2"], "candidate_b": ["c1", "c3"], "safety": ["a", None], "aesthetics": ["tie", "b"]}
    ).to_csv(path, index=False)
    table = read_known_answers(path, AXES)
    assert table["candidate_b"].tolist() == ["c1", "c3"] and table["aesthetics"].tolist() == ["tie", "b"]
    pd.DataFrame({"candidate_a": ["c0", "c2"], "candidate_b": ["c1", "c3"], "safety": ["a", "left"]}).to_csv(
        path, index=False
    )
    with pytest.raises(BadInputError) as error:
        read_known_answers(path, AXES)
    assert_names(error, "gold.csv", "column safety", "row 1", "'left'")
    with pytest.raises(BadInputError) as error:
        read_known_answers(tmp_path / "none.csv", AXES)
    assert_names(error, "gold file", "does not exist")


# --- scores ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_scores_of_both_shapes_read_back_as_written(tmp_path, suffix):
    per_pair = pd.DataFrame(
        {
            "candidate_a": ["c0", "c2"],
            "candidate_b": ["c1", "c3"],
            "safety_p_a": [0.25, 0.9],
            "uncertainty": [0.5, 0.2],
            "disagreement": [0.1, 0.0],
        }
    )
    write_scores(per_pair, tmp_path / f"pairs{suffix}", AXES)
    read = read_scores(tmp_path / f"pairs{suffix}", AXES)
    assert read.per_pair and read.axes == ["safety"]
    pd.testing.assert_frame_equal(read.table, per_pair)
    per_candidate = pd.DataFrame({"candidate_id": ["c0", "c1"], "aesthetics": [1.5, -0.5], "combined": [0.1, 0.2]})
    write_scores(per_candidate, tmp_path / f"candidates{suffix}", AXES)
    read = read_scores(tmp_path / f"candidates{suffix}", AXES)
    assert not read.per_pair and read.axes == ["aesthetics"]
    assert read.table["aesthetics"].tolist() == [1.5, -0.5]


@pytest.mark.parametrize(
    "table, parts",
    [
        (
            {"candidate_a": ["a", "b"], "candidate_b": ["c", "d"], "safety_p_a": [0.5, 1.5]},
            ["safety_p_a", "row 1", "in [0.0, 1.0]"],
        ),
        (
            {"candidate_a": ["a", "b"], "candidate_b": ["c", "d"], "uncertainty": ["high", 0.1]},
            ["uncertainty", "row 0"],
        ),
        ({"candidate_id": ["a", "a"], "aesthetics": [1.0, 2.0]}, ["candidate_id", "row 1", "appears twice"]),
        ({"candidate_id": ["a", "b"], "aesthetics": [1.0, "good"]}, ["aesthetics", "row 1", "a number"]),
        ({"candidate_id": ["a", "b"], "style": [1.0, 2.0]}, ["needs candidate_a, candidate_b", "candidate_id"]),
    ],
    ids=["probability-above-1", "uncertainty-as-text", "duplicate-candidate", "score-as-text", "no-shape"],
)
def test_a_bad_scores_file_is_one_error_naming_file_column_and_row(tmp_path, table, parts):
    path = tmp_path / "scores.csv"
    pd.DataFrame(table).to_csv(path, index=False)
    with pytest.raises(BadInputError) as error:
        read_scores(path, AXES)
    assert_names(error, "scores.csv", *parts)
    with pytest.raises(BadInputError):
        write_scores(pd.DataFrame(table), tmp_path / "written.csv", AXES)
    assert not (tmp_path / "written.csv").exists()


def test_a_missing_or_damaged_scores_file(tmp_path):
    with pytest.raises(BadInputError) as error:
        read_scores(tmp_path / "nope.parquet", AXES)
    assert_names(error, "scores file", "nope.parquet", "does not exist")
    (tmp_path / "bad.parquet").write_text("x")
    with pytest.raises(BadInputError) as error:
        read_scores(tmp_path / "bad.parquet", AXES)
    assert_names(error, "bad.parquet", "not a readable parquet file")


# --- prompts --------------------------------------------------------------------------------------


def test_prompt_ids_are_line_numbers_unless_given(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(
        '# signs\na sign that says "OPEN"\n\n{"prompt": "a cat", "prompt_id": "cat", "style": "ink"}\nthe word "HI"\n'
    )
    prompts = read_prompts(path)
    assert [(p.prompt_id, p.prompt) for p in prompts] == [
        ("p2", 'a sign that says "OPEN"'),
        ("cat", "a cat"),
        ("p5", 'the word "HI"'),
    ]
    assert prompts[1].metadata == {"style": "ink"} and prompts[0].target is None
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r) for r in [{"prompt": "a", "target": "X"}, {"prompt": "b", "id": "bee", "target": ["Y", " "]}]
        )
    )
    assert [(p.prompt_id, p.target) for p in read_prompts(jsonl)] == [("p1", ["X"]), ("bee", ["Y"])]


@pytest.mark.parametrize(
    "content, parts",
    [
        ("\n# nothing\n", ["has no prompts"]),
        ('{"prompt": "a"}\n[1, 2]\n', ["line 2", "not a JSON object"]),
        ('{"prompt": "a"}\n{"prompt": \n', ["line 2", "not valid JSON"]),
        ('{"text": "a"}\n', ["line 1", 'non-empty "prompt"']),
        ('{"prompt": "a", "target": 3}\n', ["line 1", '"target" must be a string']),
        ('{"prompt": "a", "prompt_id": "x"}\n{"prompt": "b", "prompt_id": "x"}\n', ["'x'", "appears twice"]),
    ],
    ids=["empty", "not-an-object", "broken-json", "no-prompt", "bad-target", "duplicate-id"],
)
def test_a_bad_prompts_file_is_one_error_naming_file_and_line(tmp_path, content, parts):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(BadInputError) as error:
        read_prompts(path)
    assert_names(error, "bad.jsonl", *parts)


def test_prompts_missing_file_and_text_parse():
    with pytest.raises(BadInputError, match="does not exist"):
        read_prompts("/nonexistent/prompts.txt")
    assert [p.prompt_id for p in parse_prompts("a\nb\n", "inline", jsonl=False)] == ["p1", "p2"]


# --- folders --------------------------------------------------------------------------------------


def test_staged_folders_new_replace_and_merge(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as staging:
        (staging / "a.txt").write_text("1")
        (staging / "sub").mkdir()
    with pytest.raises(BadInputError, match="not empty"):
        with staged_folder(out):
            pass
    with pytest.raises(RuntimeError):
        with staged_folder(out, existing="replace") as staging:
            (staging / "b.txt").write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "sub"]  # a failed write leaves the old folder
    with staged_folder(out, existing="merge") as staging:
        (staging / "a.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "sub"] and (out / "a.txt").read_text() == "2"
    with staged_folder(out, existing="replace") as staging:
        (staging / "b.txt").write_text("3")
    assert [p.name for p in out.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or previous folder left


# --- edits ----------------------------------------------------------------------------------------


def edit_rows() -> list[dict]:
    """A source and two edits of it, as ``imagepref generate --edits`` writes them."""
    rows = candidate_rows(count=3, prefix="e")
    rows[0] |= {"prompt_id": "e-source", "source_candidate": None, "instruction": None}
    for row in rows[1:]:
        row |= {"prompt_id": "e", "source_candidate": "e0", "instruction": "make the ink blue"}
    return rows


def test_an_edit_set_reads_back_with_its_sources_and_instructions(tmp_path):
    table = read_candidate_set(candidate_set(tmp_path / "edits", edit_rows(), prefix="e"))
    assert table["source_candidate"].tolist() == [None, "e0", "e0"]
    assert table["instruction"].tolist()[1:] == ["make the ink blue"] * 2


@pytest.mark.parametrize(
    "change, parts",
    [
        (lambda t: t.assign(source_candidate=[None, None, "e0"]), ["source_candidate, row 1", "needs a source"]),
        (lambda t: t.assign(instruction=[None, "", "blue"]), ["instruction, row 1", "needs an instruction"]),
        (lambda t: t.assign(source_candidate=[None, "elsewhere", "e0"]), ["row 1", "not another candidate"]),
        (lambda t: t.assign(source_candidate=[None, "e1", "e0"]), ["row 1", "not another candidate"]),
        (lambda t: t.drop(columns="instruction"), ["instruction", "together"]),
    ],
)
def test_a_bad_edit_set_is_one_error_naming_the_row(tmp_path, change, parts):
    folder = candidate_set(tmp_path / "edits", edit_rows(), prefix="e")
    rewrite(folder, CANDIDATES_FILE, change)
    with pytest.raises(BadInputError) as error:
        read_candidate_set(folder)
    assert_names(error, str(folder / CANDIDATES_FILE), *parts)


def test_preference_data_about_edits_carries_source_and_instruction(tmp_path):
    pairs = pairs_table().assign(source_candidate="e0", instruction="make the ink blue")
    pairs = pairs[pair_columns(AXES, edits=True)]
    annotations = annotations_table().assign(source_candidate="e0", instruction="make the ink blue")
    annotations = annotations[annotation_columns(AXES, edits=True)]
    write_pairs(pairs, tmp_path)
    write_annotations(annotations, tmp_path)
    assert read_pairs(tmp_path)[["source_candidate", "instruction"]].drop_duplicates().values.tolist() == [
        ["e0", "make the ink blue"]
    ]
    assert list(read_annotations(tmp_path).columns[4:6]) == ["source_candidate", "instruction"]
    with pytest.raises(BadInputError) as error:
        write_pairs(pairs.drop(columns="source_candidate"), tmp_path / "other")
    assert_names(error, "source_candidate", "together")
    assert "instruction_fidelity" in EDIT_AXES and "preservation" in EDIT_AXES


def test_an_edits_file_reads_and_an_instruction_without_a_source_is_refused(tmp_path):
    path = tmp_path / "edits.jsonl"
    path.write_text(
        '# edits\n{"source": "c0", "instruction": "make  the ink blue"}\n{"id": "x", "source": "c1", "instruction": "no box"}\n'
    )
    assert [(e.edit_id, e.source, e.instruction) for e in read_edit_requests(path)] == [
        ("e2", "c0", "make the ink blue"),
        ("x", "c1", "no box"),
    ]
    path.write_text('{"instruction": "make the ink blue"}\n')
    with pytest.raises(BadInputError, match="line 1: an instruction needs a source"):
        read_edit_requests(path)
    path.write_text('{"source": "c0", "instruction": "a", "kind": "ink"}\n')
    with pytest.raises(BadInputError, match="unknown field 'kind'"):
        read_edit_requests(path)


def test_imagepref_formats_imports_no_torch_and_no_other_part():
    code = (
        "import sys, imagepref.formats, imagepref.labeling; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}), "
        "sorted(m for m in sys.modules if m.split('.')[:2] in (['imagepref', 'policy'], ['imagepref', 'reward'], "
        "['imagepref', 'eval'], ['imagepref', 'recipes'])))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] []"
