"""DPO on edit turns: preference data about edits and on-policy pairs on edit turns train with
each result scored in its whole turn (the context ``Generator.edit`` samples it after), the pair
policy reads the edit axes, and DPO teaches the shipped edit-trained generator to follow an
instruction it often ignored."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch

from imagepref.errors import BadInputError
from imagepref.policy.align import DPOSettings, OnPolicyPairs, build_rewards, on_policy_examples, train_dpo
from imagepref.policy.align.config import EDIT_PAIR_WEIGHTS, EDIT_RANKING_REWARDS, PairPolicy
from imagepref.policy.align.edit_turns import EditSources, training_edit_prompts
from imagepref.policy.align.pairs import preference_examples
from imagepref.policy.align.rewards import scorer
from imagepref.policy.pretrain import micro_generator
from imagepref.reward.synthetic import glyph_edit_preference_data


@pytest.fixture(scope="module")
def edit_preferences(tmp_path_factory):
    """Glyph-world edit preference data (candidates with sources, pairs with the edit axes)
    through the micro generator's codec."""
    generator = micro_generator(seed=0)
    root = tmp_path_factory.mktemp("edit-prefs")
    glyph_edit_preference_data(root / "prefs", generator.codec, lambda image: "ABC", edits=4, results_per_edit=3)
    return generator, root / "prefs"


def test_edit_pairs_are_scored_in_the_turn_generator_edit_samples_after(edit_preferences):
    generator, prefs = edit_preferences
    examples = preference_examples(prefs, [prefs / "candidates"], generator, PairPolicy())
    candidates = pd.read_parquet(prefs / "candidates" / "candidates.parquet").set_index("candidate_id")
    pairs = pd.read_parquet(prefs / "pairs.parquet").set_index("pair_id")
    assert examples
    start = generator.config.image_token_start
    turns = [pairs.loc[e["pair_id"]] for e in examples]
    turn_sources = [candidates.loc[pair["source_candidate"]] for pair in turns]
    drawn = generator.edit(
        torch.tensor([list(source["image_tokens"]) for source in turn_sources]),
        [pair["instruction"] for pair in turns],
        [source["prompt"] for source in turn_sources],
        seed=0,
        decode=False,
    )
    for example, pair, source, context in zip(examples, turns, turn_sources, drawn.prompt_ids):
        # The whole turn: source prompt, source block, instruction, the glyph family's lead code.
        assert example["prompt_ids"] == context
        assert example["prompt_ids"][-1] == source["image_tokens"][0] + start
        results = sorted(tuple(t - start for t in example[k]) for k in ("chosen_ids", "rejected_ids"))
        tokens = sorted(tuple(candidates.loc[pair[c], "image_tokens"]) for c in ("candidate_a", "candidate_b"))
        assert results == tokens  # chosen and rejected are the pair's two results


def test_the_pair_policy_weighs_the_edit_axes_on_edit_data(edit_preferences):
    generator, prefs = edit_preferences
    pairs = pd.read_parquet(prefs / "pairs.parquet")
    examples = preference_examples(prefs, [prefs / "candidates"], generator, PairPolicy(safety_first=False))
    decided = {e["pair_id"]: e for e in examples}
    for row in pairs.to_dict("records"):
        score = sum(w * {"a": 1, "b": -1}.get(row[f"{axis}_label"], 0) for axis, w in EDIT_PAIR_WEIGHTS.items())
        assert (row["pair_id"] in decided) == (score != 0)
    assert PairPolicy(weights={"preservation": 1.0}).for_edits().weights == {"preservation": 1.0}
    with pytest.raises(BadInputError, match="does not judge"):
        preference_examples(prefs, [prefs / "candidates"], generator, PairPolicy(weights={"prompt_fidelity": 1.0}))


def test_dpo_on_edit_pairs_moves_the_margin_up(edit_preferences, tmp_path):
    generator, prefs = edit_preferences
    examples = preference_examples(prefs, [prefs / "candidates"], generator, PairPolicy())
    settings = DPOSettings(steps=8, batch_size=4, learning_rate=3e-3, save_every=100, monitor_every=0, report_to=[])
    result = train_dpo(generator, examples, settings, tmp_path / "run")
    margins = [h["rewards/margins"] for h in result["log_history"] if "rewards/margins" in h]
    assert len(margins) == 8 and sum(margins[-3:]) / 3 > margins[0] + 0.05


def test_bad_edit_pairs_are_refused(edit_preferences, tmp_path):
    generator, prefs = edit_preferences
    pairs = pd.read_parquet(prefs / "pairs.parquet")
    for name, change, message in (
        ("absent-source", lambda f: f.assign(source_candidate="nowhere"), "none of the candidate sets"),
        ("other-instruction", lambda f: f.assign(instruction="make the ink blue"), "pair the results of one edit"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        change(pairs.copy()).to_parquet(folder / "pairs.parquet")
        with pytest.raises(BadInputError, match=message):
            preference_examples(folder, [prefs / "candidates"], generator, PairPolicy())


def test_on_policy_edit_pairs_are_guided_edits_ranked_by_the_edit_rules():
    generator = micro_generator(seed=0)
    sources = EditSources(generator)
    prompts = training_edit_prompts(3)
    settings = OnPolicyPairs(images_per_prompt=4, min_gap=0.0)
    weights = settings.reward_weights(edits=True)
    assert weights == EDIT_RANKING_REWARDS and settings.reward_weights(edits=False) == settings.rewards
    functions, mixed = build_rewards(weights, generator, read_text=lambda image: "ABC", edit_sources=sources)
    score = scorer(functions, mixed)
    examples = on_policy_examples(generator, prompts, score, settings, 7, {"guidance_scale": 3.0}, sources)
    # The same draws as Generator.edit at that guidance: its unconditional context is the edit's.
    repeated = [p for p in prompts for _ in range(4)]
    drawn = generator.edit(*sources.turns(repeated), seed=7, guidance_scale=3.0, decode=False)
    values = torch.tensor(score(drawn.completion_ids.tolist(), repeated)).view(3, 4)
    assert examples
    for example in examples:
        i = int(example["pair_id"].rsplit("-", 1)[1])
        assert example["prompt_ids"] == drawn.prompt_ids[4 * i]
        assert example["chosen_ids"] == drawn.completion_ids[4 * i + int(values[i].argmax())].tolist()
        assert example["rejected_ids"] == drawn.completion_ids[4 * i + int(values[i].argmin())].tolist()


# --- the end-to-end check on the shipped edit-trained generator ------------------------------------
# Edits whose rules read pixels only (colours, shapes, the mark): no OCR in the test. The shipped
# edit-trained generator succeeds on about half of them.
PIXEL_KINDS = ("ink_colour", "background", "remove_mark", "add_underline", "remove_underline", "add_box", "remove_box")


def pixel_edit_prompts(count: int, seed: str) -> list[str]:
    from imagepref.policy.align.edit_turns import edit_prompt
    from imagepref.policy.glyphworld.edits import training_edit

    rng = random.Random(seed)
    return [edit_prompt(training_edit(rng, PIXEL_KINDS[i % len(PIXEL_KINDS)])) for i in range(count)]


def edit_rule_means(generator, sources, prompts, seed) -> dict[str, float]:
    """Mean edit success and mean edit rules (fidelity and preservation) of guided, decoded edits."""
    functions, _ = build_rewards(
        {"edit_success": 1.0, "edit_rules": 1.0}, generator, read_text=lambda image: "", edit_sources=sources
    )
    ids = generator.edit(*sources.turns(prompts), seed=seed, decode=False).completion_ids.tolist()
    success, rules = (function(prompts, None, ids) for function in functions)
    return {"success": sum(success) / len(success), "rules": sum(rules) / len(rules)}


@pytest.mark.slow
def test_on_policy_dpo_on_edit_turns_moves_the_edit_trained_generator_toward_the_edit_rules(tmp_path):
    # On-policy pairs on edit turns (guided edits of the generator's own, best against worst by
    # the edit rules), trained by the TRL trainer with a precomputed reference. Afterwards fresh
    # edits (another seed) of the trained sources succeed far more often, and the edit rules rate
    # edits of other sources higher.
    from imagepref.policy.generator import load_generator
    from imagepref.policy.glyphworld import shipped_edit_generator

    generator = load_generator(shipped_edit_generator())
    sources = EditSources(generator)
    trained, other = pixel_edit_prompts(64, "dpo-edits-train"), pixel_edit_prompts(96, "dpo-edits-measure")
    before_trained, before_other = (
        edit_rule_means(generator, sources, trained * 2, 9),
        edit_rule_means(generator, sources, other, 5),
    )
    settings = DPOSettings(
        steps=30,
        batch_size=8,
        learning_rate=5e-4,
        beta=0.5,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, 1.0],
        precompute_ref_log_probs=True,
        save_every=100,
        monitor_every=0,
        report_to=[],
    )
    functions, mixed = build_rewards(
        settings.on_policy.reward_weights(edits=True), generator, read_text=lambda image: "", edit_sources=sources
    )
    examples = on_policy_examples(
        generator, trained, scorer(functions, mixed), OnPolicyPairs(images_per_prompt=4), 1, {}, sources
    )
    result = train_dpo(generator, examples, settings, tmp_path / "run")
    first = next(h for h in result["log_history"] if "rewards/margins" in h)
    # The precomputed reference is the starting policy's own log-probs of the same turns.
    assert abs(first["rewards/chosen"]) < 1e-3 and abs(first["rewards/rejected"]) < 1e-3
    after_trained, after_other = (
        edit_rule_means(generator, sources, trained * 2, 9),
        edit_rule_means(generator, sources, other, 5),
    )
    assert after_trained["success"] >= before_trained["success"] + 0.1, (before_trained, after_trained)
    assert after_other["rules"] >= before_other["rules"] + 0.02, (before_other, after_other)
