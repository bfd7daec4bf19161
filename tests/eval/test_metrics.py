"""Text-rendering metrics against values computed by hand."""

from __future__ import annotations

import pytest

from imagepref.eval import metrics
from imagepref.eval.metrics import (
    TextNormalization,
    aggregate_text_scores,
    assign_runs,
    extract_targets,
    flow_grpo_reward,
    score_text,
)


def test_perfect_reading_scores_one_everywhere():
    score = score_text("Hello World", "HELLO   world!")
    assert score.has_target and score.exact_match
    assert (score.word_accuracy, score.cer, score.ned, score.reading_similarity) == (1.0, 0.0, 1.0, 1.0)
    assert score.flow_grpo_score == 1.0
    assert (score.word_precision, score.word_recall, score.word_f1) == (1.0, 1.0, 1.0)


def test_empty_reading():
    score = score_text("OPEN", "")
    assert score.exact_match is False
    assert score.cer == 1.0  # 4 edits / 4 characters
    assert score.ned == 0.0
    assert score.reading_similarity == 0.0 and score.flow_grpo_score == 0.0
    assert score.word_accuracy == 0.0
    assert score.word_precision is None  # nothing read: undefined, not 0
    assert score.word_f1 == 0.0
    assert score.read_words == 0


def test_one_wrong_character():
    score = score_text("OPEN", "0PEN")
    assert score.cer == pytest.approx(0.25)
    assert score.ned == pytest.approx(0.75)
    assert score.reading_similarity == pytest.approx(0.75)
    assert score.flow_grpo_score == pytest.approx(0.75)
    assert score.word_accuracy == 0.0 and score.word_precision == 0.0


def test_repeated_words_count_as_a_multiset():
    score = score_text("go go go", "go")
    assert score.word_recall == pytest.approx(1 / 3)
    assert score.word_precision == 1.0
    assert score.word_f1 == pytest.approx(0.5)
    # "go go go" (8 chars) against "go": 6 deletions
    assert score.cer == pytest.approx(6 / 8)
    assert score.ned == pytest.approx(1 - 6 / 8)
    # The reading similarity compares without spaces: "gogogo" against "go", 4 deletions
    assert score.reading_similarity == pytest.approx(1 - 4 / 6)
    assert score.flow_grpo_score == pytest.approx(1 - 4 / 6)  # "gogogo" does not occur in "go"


def test_several_quoted_pieces_are_scored_piece_by_piece():
    prompt = 'A door that says "OPEN" above a handle marked "Pull"'
    score = score_text(extract_targets(prompt), "OPEN PUSH")
    first, second = score.pieces
    assert (first.target, first.matched, first.edits) == ("open", "open", 0)
    assert (second.target, second.matched, second.edits) == ("pull", "push", 2)
    assert score.exact_match is False
    assert score.cer == pytest.approx(2 / 8)
    assert score.ned == pytest.approx((1.0 + 0.5) / 2)
    # Each piece's reading similarity ignores the words matched to the other piece.
    assert (first.reading_similarity, second.reading_similarity) == (1.0, 0.5)
    # Flow-GRPO's score reads each piece against the whole reading "openpush": "open" occurs in
    # it; "pull" is 6 edits away, clipped at its 4 characters.
    assert (first.flow_grpo_score, second.flow_grpo_score) == (1.0, 0.0)
    assert score.word_recall == 0.5 and score.word_precision == 0.5 and score.word_f1 == 0.5


def test_stray_text_costs_precision_and_reading_similarity_but_not_exact_match():
    score = score_text("OPEN", "OPEN NOW")
    assert score.exact_match is True and score.cer == 0.0
    assert score.word_precision == 0.5
    assert score.reading_similarity == pytest.approx(1 - 3 / 4)  # "opennow" vs "open"


@pytest.mark.parametrize(
    ("target", "reading", "expected"),
    [
        ("OPEN", "OPEN NOW", 1.0),  # the target occurs in the reading: full marks
        ("NEW", "NEWS NEW", 1.0),
        ("Hello World", "xhelloworldx", 1.0),  # spaces removed and lower-cased on both sides
        ("OPEN", "0PEN", 0.75),  # 1 edit / 4 characters
        ("OPEN", "", 0.0),
        ("OPEN", "an entirely different long sign", 0.0),  # distance clipped at the target's length
        ("CAFÉ", "CAFE", 0.75),  # only spaces and case are normalised, not accents
        ("OPEN!", "OPEN", 1 - 1 / 5),  # nor punctuation
    ],
)
def test_flow_grpo_score_is_flow_grpos_reward(target, reading, expected):
    assert score_text(target, reading).flow_grpo_score == pytest.approx(expected)
    assert flow_grpo_reward(target, reading) == pytest.approx(expected)


def test_reading_similarity_and_flow_grpo_differ_on_stray_text():
    # The reading similarity (the aligners' ``ocr`` reward) charges every stray character;
    # Flow-GRPO's reward gives full marks once the target occurs anywhere.
    score = score_text("NEW", "NEWS NEW")
    assert score.reading_similarity == 0.0  # "newsnew" vs "new": 4 edits, clipped at 3
    assert score.flow_grpo_score == 1.0
    summary = aggregate_text_scores([score, score_text("OPEN", "OPEN NOW")])
    assert summary["reading_similarity"] == pytest.approx((0.0 + 0.25) / 2)
    assert summary["flow_grpo_score"] == 1.0


def test_each_read_word_serves_one_piece():
    # Two quoted pieces, one read word: one piece is read, the other is not.
    score = score_text(["SALE", "SALE"], "SALE")
    assert score.exact_match is False
    assert score.word_accuracy == 0.5
    first, second = score.pieces
    assert (first.matched, first.edits) == ("sale", 0)
    assert (second.matched, second.edits) == ("", 4)
    assert score.cer == pytest.approx(4 / 8)
    assert score.ned == pytest.approx(0.5)
    assert (first.reading_similarity, second.reading_similarity) == (1.0, 0.0)
    # Read twice, both are read.
    assert score_text(["SALE", "SALE"], "SALE SALE").exact_match is True


def test_assignment_takes_the_fewest_edits_overall():
    # "OPEN" alone would match "OPEN" best, and "OPEN NOW" best of all for the second piece;
    # the pieces share the words so that together they cost nothing.
    score = score_text(["OPEN", "OPEN NOW"], "OPEN NOW OPEN")
    assert score.exact_match is True
    assert [p.matched for p in score.pieces] == ["open", "open now"]
    assert [p.edits for p in score.pieces] == [0, 0]
    assert assign_runs(["open", "open now"], ["open", "now", "open"]) == [(0, 2, 3), (0, 0, 2)]


def test_equally_close_runs_prefer_the_longest_then_the_earliest():
    # Every run of "S A L E" is 3 edits from "sale"; the whole reading is the run matched.
    score = score_text("SALE", "S A L E")
    assert score.pieces[0].matched == "s a l e"
    assert score.cer == pytest.approx(3 / 4)
    assert score.ned == pytest.approx(1 - 3 / 7)
    # Equally close runs of the same length: the earliest.
    assert score_text("CAT", "CAR BAT").pieces[0].matched == "car"
    # A run no closer than nothing is no reading of the piece.
    nothing = score_text("OPEN", "XYZW")
    assert nothing.pieces[0].matched == "" and nothing.ned == 0.0


def test_unicode_accents_case_and_cjk():
    assert score_text("Café Müller", "CAFE MULLER").exact_match
    strict = TextNormalization(ignore_accents=False)
    score = score_text("Café Müller", "CAFE MULLER", strict)
    assert score.cer == pytest.approx(2 / 11)
    assert score_text("東京 タワー", "東京 タワー").exact_match
    assert score_text("Straße", "STRASSE").exact_match  # casefold, not lower
    # Symbols are punctuation here: "I ♥ NY" asks for the words "i" and "ny".
    assert score_text("I ♥ NY", "I NY").exact_match


def test_only_latin_accents_are_ignored():
    assert score_text("CAFÉ", "CAFE").exact_match
    assert score_text("Ｃａｆé", "cafe").exact_match  # full-width forms fold too
    # A Hangul syllable is one character, not three jamo: one syllable of two is wrong.
    assert score_text("한국", "한극").cer == pytest.approx(1 / 2)
    # The voicing mark makes another kana: "がっこう" (school) is not "かっこう" (cuckoo).
    kana = score_text("がっこう", "かっこう")
    assert kana.exact_match is False and kana.cer == pytest.approx(1 / 4)
    # Accents of other alphabets are letters there: "й" is not "и".
    assert score_text("Мой", "Мои").exact_match is False
    # Composed and decomposed forms are the same text, accents ignored or not.
    strict = TextNormalization(ignore_accents=False)
    assert score_text("Caf\u00e9", "Cafe\u0301", strict).exact_match
    assert score_text("Café", "Cafe", strict).exact_match is False


def test_case_sensitive_normalisation():
    score = score_text("Open", "OPEN", TextNormalization(ignore_case=False))
    assert score.exact_match is False and score.cer == pytest.approx(3 / 4)


def test_no_target_is_not_zero():
    score = score_text(extract_targets("a cat on a windowsill"), "CAT")
    assert score.has_target is False
    assert score.exact_match is None and score.cer is None and score.word_accuracy is None
    summary = aggregate_text_scores([score, score_text("OPEN", "OPEN")])
    assert summary["no_target"] == 1 and summary["scored"] == 1
    assert summary["exact_match"] == 1.0 and summary["word_accuracy"] == 1.0


def test_aggregate_means_and_micro_counts():
    scores = [score_text("hello world", "hello world"), score_text("OPEN", "")]
    summary = aggregate_text_scores(scores)
    assert summary["exact_match"] == 0.5
    assert summary["word_accuracy"] == 0.5
    assert summary["cer"] == pytest.approx(4 / 15)  # (0 + 4) edits / (11 + 4) characters
    assert summary["word_precision"] == 1.0  # 2 matched / 2 read
    assert summary["word_recall"] == pytest.approx(2 / 3)
    assert summary["word_f1"] == pytest.approx(0.8)
    assert aggregate_text_scores([])["exact_match"] is None


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ('A sign that reads "Welcome Home"', ["Welcome Home"]),
        ("A poster with “Less is More” on it", ["Less is More"]),
        ("Joe's shop sign that says 'OPEN 24/7' in red", ["OPEN 24/7"]),
        ("A poster reading 'Don't Panic' in red", ["Don't Panic"]),
        ("the kids' sign says ‘Lemonade’", ["Lemonade"]),
        ('Signs "Push" and "Pull"', ["Push", "Pull"]),
        ('An empty quote "" and "OK"', ["OK"]),
        ("A sunset over the sea", []),
    ],
)
def test_extract_targets(prompt, expected):
    assert extract_targets(prompt) == expected


def test_a_cut_short_assignment_search_still_gives_disjoint_runs(monkeypatch):
    # Past its step budget the search keeps its first assignment: each piece in turn takes its
    # best run still free.
    monkeypatch.setattr(metrics, "ASSIGNMENT_STEPS", 1)
    runs = assign_runs(["sale"] * 4, ["sale", "sale", "x", "sole"])
    assert runs == [(0, 0, 1), (0, 1, 2), (1, 3, 4), (4, 0, 0)]  # "x" is no closer than nothing
    used = [i for _, start, end in runs for i in range(start, end)]
    assert len(used) == len(set(used))
