"""The report's headline lines call a change better or worse only beyond noise."""

from imagepref.eval.figures import summary_lines


def _checkpoint(name, correct, safe):
    images = [
        {
            "prompt_id": f"p{i // 2}",
            "sample": i % 2,
            "text": {"has_target": True, "word_accuracy": float(c)},
            "rules": {"prompt_fidelity": 0.5, "aesthetics": 0.9, "safety": float(s)},
        }
        for i, (c, s) in enumerate(zip(correct, safe))
    ]
    summary = {
        "word_accuracy": {"value": sum(correct) / len(correct)},
        "rules/prompt_fidelity": {"value": 0.5},
        "rules/aesthetics": {"value": 0.9},
        "safety_violation_rate": {"value": 1 - sum(safe) / len(safe)},
    }
    return {"name": name, "images": images, "summary": summary}


def test_within_noise_is_never_called_better():
    base = _checkpoint("base", [i % 2 for i in range(64)], [0] * 8 + [1] * 56)
    aligned = _checkpoint("aligned", [1] + [i % 2 for i in range(1, 64)], [1] * 64)
    ocr, fidelity, aesthetics, safety = summary_lines(
        {"checkpoints": [base, aligned], "settings": {"bootstrap_seed": 0}}
    )
    assert ocr.startswith("OCR word accuracy: 50.0 % -> 51.6 % (+1.6 points") and "within noise" in ocr
    assert "better" not in ocr
    assert "(+0.0 points" in fidelity and "within noise" in fidelity
    assert aesthetics.startswith("aesthetics (rule): 90.0 % -> 90.0 %") and "within noise" in aesthetics
    # 8 of 64 images unsafe in 4 prompts, none after: the interval excludes zero.
    assert "-12.5 points" in safety and safety.split("], ")[1].startswith("better")


def test_word_accuracy_is_also_given_per_kind_of_held_out_prompt():
    base = _checkpoint("base", [0] * 64, [1] * 64)
    aligned = _checkpoint("aligned", [1] * 32 + [0] * 32, [1] * 64)
    # Prompts p0..p15 are unseen words, p16..p31 unseen templates; only the first kind improves.
    prompts = [{"prompt_id": f"p{i}", "kind": "unseen_word" if i < 16 else "unseen_template"} for i in range(32)]
    lines = summary_lines({"checkpoints": [base, aligned], "settings": {}, "prompts": prompts})
    assert (
        lines[1].startswith("OCR word accuracy, unseen word: 0.0 % -> 100.0 % (+100.0 points") and "better" in lines[1]
    )
    assert lines[2].startswith("OCR word accuracy, unseen template: 0.0 % -> 0.0 % (+0.0 points")
    assert "within noise" in lines[2] and len(lines) == 6


def test_an_evaluation_of_edits_heads_with_edit_success_fidelity_and_preservation():
    def checkpoint(name, success):
        images = [
            {
                "prompt_id": f"e{i // 2}",
                "sample": i % 2,
                "text": {"has_target": True, "word_accuracy": 1.0},
                "rules": {"success": float(s), "instruction_fidelity": float(s), "preservation": 1.0, "safety": 1.0},
            }
            for i, s in enumerate(success)
        ]
        summary = {
            key: {"value": 0.0}
            for key in ("rules/success", "rules/instruction_fidelity", "rules/preservation", "word_accuracy")
        }
        summary["safety_violation_rate"] = {"value": 0.0}
        return {"name": name, "images": images, "summary": summary}

    prompts = [{"prompt_id": f"e{i}", "kind": "unseen_word", "edit_kind": "ink_colour"} for i in range(32)]
    base, edited = checkpoint("base", [0] * 64), checkpoint("edited", [1] * 48 + [0] * 16)
    lines = summary_lines({"checkpoints": [base, edited], "settings": {}, "prompts": prompts})
    assert [line.split(":")[0] for line in lines] == [
        "edit success (rule)",
        "edit success (rule), unseen word",
        "instruction fidelity (rule)",
        "preservation (rule)",
        "OCR word accuracy of the result",
        "safety violations",
    ]
    assert lines[0].startswith("edit success (rule): 0.0 % -> 75.0 % (+75.0 points") and "better" in lines[0]


def test_every_checkpoint_gets_its_paired_differences_against_the_baseline():
    from imagepref.eval.report import paired_changes

    base = _checkpoint("base", [0] * 64, [1] * 64)
    first = _checkpoint("first", [1] * 64, [1] * 64)
    second = _checkpoint("second", [i % 2 for i in range(64)], [1] * 64)
    results = {"checkpoints": [base, first, second], "settings": {"baseline": "first", "bootstrap_seed": 0}}
    changes = dict(paired_changes(results))
    assert list(changes) == ["base", "second"]  # every checkpoint but the baseline
    assert changes["base"][0].startswith("OCR word accuracy: 100.0 % -> 0.0 % (-100.0 points")
    assert "worse; first -> base" in changes["base"][0]
    assert changes["second"][0].startswith("OCR word accuracy: 100.0 % -> 50.0 %")


def test_a_single_checkpoint_gets_its_figures_without_a_comparison():
    base = _checkpoint("base", [i % 2 for i in range(64)], [1] * 64)
    ocr, *_ = summary_lines({"checkpoints": [base], "settings": {}})
    assert ocr == "OCR word accuracy: 50.0 % (base)"
