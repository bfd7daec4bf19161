"""Intervals and win rates against values computed by hand."""

from __future__ import annotations

import pytest

from imagepref.eval.figures import axis_figures, safety_violation_rate, text_figures, win_rates
from imagepref.eval.metrics import score_text
from imagepref.eval.statistics import clustered_proportion, clustered_ratio, outcome, wilson_interval, win_rate

Z2 = 1.959963984540054**2  # z squared, 95 %


def test_wilson_interval_textbook_value():
    low, high = wilson_interval(20 / 100, 100)
    assert (low, high) == (pytest.approx(0.13337, abs=1e-5), pytest.approx(0.28883, abs=1e-5))


@pytest.mark.parametrize("flagged", [0, 1])
def test_a_share_at_0_or_100_percent_keeps_a_width(flagged):
    # 128 images, two per prompt, none (or all) flagged: the bootstrap says [0, 0] (or [1, 1]).
    prompts = [i // 2 for i in range(128)]
    assert clustered_ratio(prompts, [flagged] * 128)["ci"] == [flagged, flagged]
    share = clustered_proportion(prompts, [flagged] * 128)
    low, high = share["ci"]
    assert share["value"] == flagged and share["interval"] == "wilson"
    assert low <= flagged <= high and high - low > 0
    # The prompts' agreement cannot be measured at 0 %: each prompt counts once, the cautious end.
    assert share["effective_n"] == 64
    assert high - low == pytest.approx(Z2 / (64 + Z2))


def test_effective_number_follows_the_prompts_agreement():
    # Independent images (one per prompt): the textbook Wilson interval on 128 images.
    independent = clustered_proportion(list(range(128)), [0] * 128)
    assert independent["effective_n"] == 128 and independent["ci"][1] == pytest.approx(Z2 / (128 + Z2))
    # Two images per prompt that always agree count as one: 64 effective images.
    alike = clustered_proportion([i // 2 for i in range(128)], [float(i // 2 < 16) for i in range(128)])
    assert alike["value"] == 0.25 and alike["effective_n"] == pytest.approx(64)
    assert alike["ci"] == pytest.approx(list(wilson_interval(0.25, 64)))
    # Two images per prompt that never agree within a prompt: no loss, 128 effective images.
    mixed = clustered_proportion([i // 2 for i in range(128)], [float(i % 2) for i in range(128)])
    assert mixed["value"] == 0.5 and mixed["effective_n"] == pytest.approx(128)
    assert clustered_proportion([], [])["value"] is None


def test_safety_violations_and_exact_match_use_wilson():
    images = [
        {
            "prompt_id": f"p{i // 2}",
            "sample": i % 2,
            "rules": {"aesthetics": 0.9, "prompt_fidelity": 1.0, "safety": 1.0},
            "text": score_text("OPEN", "OPEN").to_dict(),
        }
        for i in range(128)
    ]
    violations = safety_violation_rate(images)
    assert violations["value"] == 0.0 and violations["ci"][0] == 0.0 and violations["ci"][1] > 0.05
    safe = axis_figures(images, "rules")["safety"]
    assert safe["value"] == 1.0 and safe["ci"][0] < 0.95 and safe["interval"] == "wilson"
    assert axis_figures(images, "rules")["aesthetics"]["interval"] == "bootstrap"
    exact = text_figures(images)["exact_match"]
    assert exact["value"] == 1.0 and exact["ci"][0] < 1.0 and exact["interval"] == "wilson"


def test_a_difference_at_the_margin_gives_one_verdict_whatever_its_floating_error():
    assert 0.8 - 0.7 > 0.1 > 0.7 - 0.6  # the floating error the comparison must not see
    assert outcome(0.8 - 0.7, 0.1) == outcome(0.7 - 0.6, 0.1) == 1.0  # reaching the margin decides
    assert outcome(0.6 - 0.7, 0.1) == 0.0
    assert outcome(0.75 - 0.7, 0.1) == 0.5  # below it, a tie
    assert outcome(0.0, 0.0) == 0.5 and outcome(1e-15, 0.0) == 0.5  # equal scores tie even without a margin
    assert outcome(0.01, 0.0) == 1.0


def test_win_rate_counts_and_interval():
    keys = [("a", 0), ("b", 0), ("c", 0), ("d", 0)]
    baseline = {("a", 0): 0.7, ("b", 0): 0.6, ("c", 0): 0.7, ("d", 0): 0.5}
    rate = win_rate(keys, [0.8, 0.7, 0.75, 0.3], baseline, tie_margin=0.1)
    assert (rate["wins"], rate["ties"], rate["losses"]) == (2, 1, 1)
    assert rate["value"] == pytest.approx(2.5 / 4)
    assert rate["ci"][0] < rate["value"] < rate["ci"][1]
    # All wins: the rate is 1 and the interval still has a width.
    all_won = win_rate(keys, [1.0] * 4, {k: 0.0 for k in keys})
    assert all_won["value"] == 1.0 and all_won["ci"][0] < 1.0


def test_each_rule_axis_ties_below_its_own_margin():
    def image(prompt, fidelity, safety):
        return {
            "prompt_id": prompt,
            "sample": 0,
            "rules": {"aesthetics": 0.9, "prompt_fidelity": fidelity, "safety": safety},
        }

    base = [image("p", 0.4, 0.4)]
    # The same 0.3 difference decides on fidelity (margin 0.1) and ties on safety (margin 0.5,
    # the safety rule scores 0 or 1).
    rates = win_rates([image("p", 0.7, 0.7)], base, "rules")
    assert rates["prompt_fidelity"]["wins"] == 1
    assert rates["safety"]["ties"] == 1
    assert rates["aesthetics"]["ties"] == 1
    # Reward scores have no margin: any difference decides.
    rewards = win_rates(
        [{"prompt_id": "p", "sample": 0, "reward": {"aesthetics": 0.51}}],
        [{"prompt_id": "p", "sample": 0, "reward": {"aesthetics": 0.5}}],
        "reward",
    )
    assert rewards["aesthetics"]["wins"] == 1


def test_paired_difference_calls_a_consistent_change_beyond_noise_and_a_mixed_one_within():
    from imagepref.eval.statistics import paired_difference

    clusters = [f"p{i // 4}" for i in range(64)]
    same = paired_difference(clusters, [0.5] * 64, [0.5] * 64)
    assert same["value"] == 0 and same["verdict"] == "within noise"
    lifted = paired_difference(clusters, [0.0] * 64, [1.0 if i % 2 else 0.0 for i in range(64)])
    assert lifted["value"] == 0.5 and lifted["ci"][0] > 0 and lifted["verdict"] == "beyond noise"
    # Half the prompts gain everything, half lose everything: the mean change is 0.
    mixed = paired_difference(
        clusters, [0.0 if (i // 4) % 2 else 1.0 for i in range(64)], [1.0 if (i // 4) % 2 else 0.0 for i in range(64)]
    )
    assert mixed["value"] == 0 and mixed["ci"][0] < 0 < mixed["ci"][1] and mixed["verdict"] == "within noise"


def _checkpoint(name, correct):
    images = [
        {"prompt_id": f"p{i // 2}", "sample": i % 2, "text": {"has_target": True, "word_accuracy": float(c)}}
        for i, c in enumerate(correct)
    ]
    value = sum(correct) / len(correct)
    return {"name": name, "images": images, "summary": {"word_accuracy": {"value": value}}}


def test_best_checkpoint_is_marked_only_beyond_noise():
    from imagepref.eval.figures import best_checkpoints

    base = _checkpoint("base", [i % 2 for i in range(64)])
    # One more image right out of 64: a higher value, inside the noise.
    close = _checkpoint("close", [1] + [i % 2 for i in range(1, 64)])
    assert "word_accuracy" not in best_checkpoints([base, close])
    far = _checkpoint("far", [1] * 64)
    assert best_checkpoints([base, far])["word_accuracy"] == ["far"]
