"""Text-rendering metrics against values computed by hand."""

from __future__ import annotations

import pytest

from imagepref.eval.metrics import TextNormalization, aggregate_text_scores, extract_targets, score_text


def test_perfect_reading_scores_one_everywhere():
    score = score_text("Hello World", "HELLO   world!")
    assert score.has_target and score.exact_match
    assert (score.word_accuracy, score.cer, score.ned, score.flow_grpo_score) == (1.0, 0.0, 1.0, 1.0)
    assert (score.word_precision, score.word_recall, score.word_f1) == (1.0, 1.0, 1.0)


def test_empty_reading():
    score = score_text("OPEN", "")
    assert score.exact_match is False
    assert score.cer == 1.0  # 4 edits / 4 characters
    assert score.ned == 0.0
    assert score.flow_grpo_score == 0.0
    assert score.word_accuracy == 0.0
    assert score.word_precision is None  # nothing read: undefined, not 0
    assert score.word_f1 == 0.0
    assert score.read_words == 0


def test_one_wrong_character():
    score = score_text("OPEN", "0PEN")
    assert score.cer == pytest.approx(0.25)
    assert score.ned == pytest.approx(0.75)
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
    # Flow-GRPO compares without spaces: "gogogo" against "go", 4 deletions
    assert score.flow_grpo_score == pytest.approx(1 - 4 / 6)


def test_several_quoted_pieces_are_scored_piece_by_piece():
    prompt = 'A door that says "OPEN" above a handle marked "Pull"'
    score = score_text(extract_targets(prompt), "OPEN PUSH")
    first, second = score.pieces
    assert (first.target, first.matched, first.edits) == ("open", "open", 0)
    assert (second.target, second.matched, second.edits) == ("pull", "push", 2)
    assert score.exact_match is False
    assert score.cer == pytest.approx(2 / 8)
    assert score.ned == pytest.approx((1.0 + 0.5) / 2)
    # Each piece's Flow-GRPO score ignores the words matched to the other piece.
    assert (first.flow_grpo_score, second.flow_grpo_score) == (1.0, 0.5)
    assert score.word_recall == 0.5 and score.word_precision == 0.5 and score.word_f1 == 0.5


def test_stray_text_costs_precision_and_flow_grpo_but_not_exact_match():
    score = score_text("OPEN", "OPEN NOW")
    assert score.exact_match is True and score.cer == 0.0
    assert score.word_precision == 0.5
    assert score.flow_grpo_score == pytest.approx(1 - 3 / 4)  # "opennow" vs "open"


def test_unicode_accents_case_and_cjk():
    assert score_text("Café Müller", "CAFE MULLER").exact_match
    strict = TextNormalization(ignore_accents=False)
    score = score_text("Café Müller", "CAFE MULLER", strict)
    assert score.cer == pytest.approx(2 / 11)
    assert score_text("東京 タワー", "東京 タワー").exact_match
    assert score_text("Straße", "STRASSE").exact_match  # casefold, not lower
    # Symbols are punctuation here: "I ♥ NY" asks for the words "i" and "ny".
    assert score_text("I ♥ NY", "I NY").exact_match


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
