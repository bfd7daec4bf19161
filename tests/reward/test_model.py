"""The reward model: each backbone on a tiny config, save/load/score round trips, the combined
reward (normalisation, safety gate and penalty) and pair uncertainty."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.policy.glyphworld import render, training_specs
from imagepref.reward import RewardConfig, RewardModel, load_reward_model
from imagepref.reward.config import HeadStatistics

PROMPTS = ['a red sign that says "OPEN"', 'the word "CAFE" in blue']


def images() -> list[Image.Image]:
    return [render(s) for s in training_specs(2, seed=5)]


def test_pixel_round_trip_scores_exactly(tmp_path):
    model = RewardModel.create(RewardConfig(width=32, layers=1, heads=2))
    before = model.score(images(), PROMPTS)
    assert set(before) == {"aesthetics", "prompt_fidelity", "safety"} and before["safety"].shape == (2,)
    model.save_pretrained(tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    after = loaded.score(images(), PROMPTS)
    for axis in before:
        assert torch.equal(before[axis], after[axis])
    half = load_reward_model(tmp_path / "rm", dtype=torch.bfloat16).score(images(), PROMPTS)
    assert torch.allclose(half["aesthetics"], before["aesthetics"], atol=0.1)


def test_pixel_backbone_reads_prompt_characters_drawn_through_its_image_stem():
    from imagepref.reward.backbones import PAD_BYTE, rendered_bytes

    table = rendered_bytes(8, 16)
    assert table.shape == (PAD_BYTE + 1, 3, 16, 8) and table.dtype == torch.uint8
    ink = (table[:, 0] < 128).flatten(1).sum(1)
    assert all(ink[b] > 0 for b in range(33, 127)) and ink[ord(" ")] == ink[0] == ink[PAD_BYTE] == 0
    letters = table[ord("A") : ord("Z") + 1, 0].flatten(1).float()
    assert torch.cdist(letters, letters).add(torch.eye(26) * 1e9).min() > 0  # 26 different drawings

    # With the byte embeddings zeroed, a changed quoted letter still changes the fidelity score:
    # the prompt's characters reach the reader as drawings through the stem, which is trained.
    model = RewardModel.create(RewardConfig(width=32, heads=2)).eval()
    assert model.config.rendered_text and model.backbone.glyphs.shape == table.shape
    assert any(p is model.backbone.stem[0].weight for p in model.parameters())
    with torch.no_grad():
        model.backbone.text.embedding.weight.zero_()
        model.backbone.text.conv.weight.zero_()
        model.backbone.text.conv.bias.zero_()
    image = images()[:1] * 2
    scores = model.score(image, ['a sign that says "OPEN"', 'a sign that says "OPEX"'])["prompt_fidelity"]
    assert scores[0] != scores[1]
    plain = RewardModel.create(RewardConfig(width=32, heads=2, rendered_text=False))
    assert not hasattr(plain.backbone, "glyphs")


def test_token_backbone_reads_the_generators_embeddings(tmp_path, glyph_generator):
    config = RewardConfig(backbone="token", width=32, heads=2, axes=["prompt_fidelity", "safety"])
    model = RewardModel.create(config, generator=glyph_generator)
    table = glyph_generator.model.get_input_embeddings().weight
    start = glyph_generator.config.image_token_start
    assert torch.equal(
        model.backbone.image_embeddings.weight, table[start : start + glyph_generator.config.num_image_tokens]
    )
    assert not model.backbone.image_embeddings.weight.requires_grad
    tokens = glyph_generator.encode_images(images())
    before = model.score(prompts=PROMPTS, tokens=tokens)
    model.save_pretrained(tmp_path / "rm")
    after = load_reward_model(tmp_path / "rm").score(prompts=PROMPTS, tokens=tokens.tolist())
    assert torch.equal(before["safety"], after["safety"])
    with pytest.raises(BadInputError, match="image tokens"):
        model.score(images=images(), prompts=PROMPTS)
    with pytest.raises(BadInputError, match="must lie in"):
        model.score(prompts=PROMPTS, tokens=tokens + 10_000)


def test_combined_reward_normalises_and_gates_on_safety():
    config = RewardConfig(
        width=32,
        layers=1,
        heads=2,
        mix_weights={"aesthetics": 3.0, "prompt_fidelity": 1.0},
        normalisation={
            "aesthetics": HeadStatistics(mean=1.0, scale=2.0),
            "prompt_fidelity": HeadStatistics(mean=-1.0, scale=0.5),
            "safety": HeadStatistics(mean=0.0, scale=1.0),
        },
        safety_cut=-1.0,
        gate_reward=-5.0,
    )
    model = RewardModel(config)
    raw = torch.tensor(
        [
            [5.0, -1.0, 0.0],  # safe: z = (2, 0) -> (3*2 + 0) / 4 = 1.5
            [99.0, 3.0, -2.0],
        ]
    )  # very high aesthetics, but unsafe (z_safety -2 < cut -1)
    assert model.combined_from_scores(raw).tolist() == pytest.approx([1.5, -5.0])
    penalty = RewardModel(config.model_copy(update={"safety_mode": "penalty", "safety_penalty": 2.0}))
    combined = penalty.combined_from_scores(raw)
    z_mix = (3 * 49.0 + 8.0) / 4
    assert combined[1].item() == pytest.approx(z_mix - 2.0 * torch.sigmoid(torch.tensor(4.0)).item(), abs=1e-5)
    assert combined[0].item() == pytest.approx(1.5 - 2.0 * torch.sigmoid(torch.tensor(-4.0)).item(), abs=1e-5)
    # An explicit threshold wins over the learned cut.
    strict = RewardModel(config.model_copy(update={"safety_threshold": 0.5}))
    assert strict.combined_from_scores(raw).tolist() == pytest.approx([-5.0, -5.0])


def test_uncertainty_is_highest_for_indistinguishable_pairs():
    model = RewardModel.create(RewardConfig(width=32, layers=1, heads=2))
    side = {"images": images(), "prompts": PROMPTS}
    same = model.uncertainty(side, side)
    assert same["uncertainty"].tolist() == pytest.approx([1.0, 1.0])
    assert same["safety_p_a"].tolist() == pytest.approx([0.5, 0.5])
    other = RewardModel.create(RewardConfig(width=32, layers=1, heads=2, seed=1))
    swapped = {"images": images()[::-1], "prompts": PROMPTS}
    result = model.uncertainty(side, swapped, ensemble=[other])
    assert (result["uncertainty"] <= 1).all() and result["disagreement"].shape == (2,)


def test_an_ensemble_scores_the_mean_of_its_members_and_their_spread_is_its_disagreement(tmp_path):
    model = RewardModel.create(RewardConfig(width=32, heads=2, members=3)).eval()
    inputs = model.prepare(images(), PROMPTS)
    with torch.no_grad():
        each = torch.stack([member(**inputs) for member in model.members])
        assert not torch.allclose(each[0], each[1])  # each member starts from its own weights
        assert torch.allclose(model(**inputs), each.mean(0))
    model.save_pretrained(tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    assert len(loaded.members) == 3
    assert torch.equal(
        loaded.score(images(), PROMPTS)["prompt_fidelity"], model.score(images(), PROMPTS)["prompt_fidelity"]
    )

    side, swapped = {"images": images(), "prompts": PROMPTS}, {"images": images()[::-1], "prompts": PROMPTS}
    assert (model.uncertainty(side, swapped)["disagreement"] > 0).all()
    with torch.no_grad():  # members that agree exactly do not disagree
        for member in model.members[1:]:
            member.load_state_dict(model.members[0].state_dict())
    assert model.uncertainty(side, swapped)["disagreement"].abs().max() < 1e-6
    assert "disagreement" not in RewardModel.create(RewardConfig(width=32, heads=2, members=1)).uncertainty(
        side, swapped
    )


def test_scoring_a_candidate_set_per_candidate_and_per_pair(tmp_path):
    import pandas as pd

    from imagepref.reward.scoring import candidate_scores, pair_scores

    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    rows, pictures = [], []
    specs = training_specs(6, seed=2)
    for index, spec in enumerate(specs):  # three images for each of two prompts
        image = render(spec)
        image.save(folder / "images" / f"c{index}.png")
        rows.append(
            {
                "candidate_id": f"c{index}",
                "prompt_id": f"p{index // 3}",
                "prompt": specs[index // 3 * 3].prompt,
                "image_path": f"images/c{index}.png",
            }
        )
        pictures.append(image)
    pd.DataFrame(rows).to_parquet(folder / "candidates.parquet")
    model = RewardModel.create(RewardConfig(width=32, heads=2, members=2))

    per_candidate = candidate_scores(model, [folder])
    direct = model.score(pictures, [row["prompt"] for row in rows])
    assert list(per_candidate["candidate_id"]) == [row["candidate_id"] for row in rows]
    assert per_candidate["safety"].tolist() == pytest.approx(direct["safety"].tolist(), abs=1e-5)
    assert per_candidate["combined"].tolist() == pytest.approx(
        model.combined_reward(pictures, [r["prompt"] for r in rows]).tolist(), abs=1e-5
    )

    per_pair = pair_scores(model, [folder])  # 3 pairs within each of 2 prompts, none across them
    assert [(a, b) for a, b in zip(per_pair["candidate_a"], per_pair["candidate_b"])] == [
        ("c0", "c1"),
        ("c0", "c2"),
        ("c1", "c2"),
        ("c3", "c4"),
        ("c3", "c5"),
        ("c4", "c5"),
    ]
    first, second = [0, 0, 1, 3, 3, 4], [1, 2, 2, 4, 5, 5]
    expected = model.uncertainty(
        {"images": [pictures[i] for i in first], "prompts": [rows[i]["prompt"] for i in first]},
        {"images": [pictures[i] for i in second], "prompts": [rows[i]["prompt"] for i in first]},
    )
    for name in ("aesthetics_p_a", "uncertainty", "disagreement"):
        assert per_pair[name].tolist() == pytest.approx(expected[name].tolist(), abs=1e-5), name
    assert (per_pair["disagreement"] > 0).all()

    (folder / "images" / "c4.png").unlink()
    with pytest.raises(BadInputError, match="1 candidate image"):
        pair_scores(model, [folder])


def test_weights_that_do_not_fit_the_config_are_one_clear_error(tmp_path):
    import json

    RewardModel.create(RewardConfig(width=32, heads=2)).save_pretrained(tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    (tmp_path / "rm" / "config.json").write_text(json.dumps({**config, "width": 48}))
    with pytest.raises(BadInputError, match=r"of shape \(.*\) where its config builds .*retrain it"):
        load_reward_model(tmp_path / "rm")


def test_a_folder_saved_before_ensembles_loads_as_one_member(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    model = RewardModel.create(RewardConfig(width=32, heads=2, members=1))
    model.save_pretrained(tmp_path / "rm")
    weights = tmp_path / "rm" / "model.safetensors"
    save_file({k.removeprefix("members.0."): v for k, v in load_file(str(weights)).items()}, str(weights))
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    del config["members"]
    (tmp_path / "rm" / "config.json").write_text(json.dumps(config))
    loaded = load_reward_model(tmp_path / "rm")
    assert len(loaded.members) == 1
    assert torch.equal(loaded.score(images(), PROMPTS)["safety"], model.score(images(), PROMPTS)["safety"])


def _tiny_clip_folder(path, kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{chr(c): 3 + i for i, c in enumerate(range(32, 127))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=48,
    )
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2
    )
    torch.manual_seed(0)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config={**text, "eos_token_id": 2}, vision_config=vision, projection_dim=16))
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("finetune", ["frozen", "lora"])
def test_clip_and_siglip_backbones_train_and_round_trip(tmp_path, kind, finetune):
    folder = _tiny_clip_folder(tmp_path / kind, kind)
    model = RewardModel.create(RewardConfig(backbone="clip", backbone_path=str(folder), finetune=finetune, width=16))
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert frozen and any("lora" in n for n in trainable) == (finetune == "lora")
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    inputs = model.prepare(images(), PROMPTS)
    model(**inputs)[:, 0].sum().backward()
    optimizer.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(
        not torch.equal(p, trainable[n])
        for n, p in model.named_parameters()
        if n in trainable and "lora" in n or n.startswith("members.0.heads.aesthetics")
    )
    model.save_pretrained(tmp_path / "rm")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "rm" / "model.safetensors"))
    assert not any(
        k.removeprefix("members.0.backbone.") in model.backbone.frozen_keys() for k in saved
    )  # frozen weights not copied
    before = model.score(images(), PROMPTS)
    after = load_reward_model(tmp_path / "rm").score(images(), PROMPTS)
    assert torch.allclose(before["safety"], after["safety"], atol=1e-6)


def test_a_backbone_folder_that_does_not_load(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(BadInputError, match="does not load"):
        RewardModel.create(RewardConfig(backbone="clip", backbone_path=str(tmp_path / "broken")))
    with pytest.raises(BadInputError, match="does not exist"):
        RewardModel.create(RewardConfig(backbone="clip", backbone_path=str(tmp_path / "absent")))
