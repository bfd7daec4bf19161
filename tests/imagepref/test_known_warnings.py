"""The command line silences the third-party warnings it knows (matched on the real upstream
warnings, so a change upstream fails here) and lets every other warning through."""

from __future__ import annotations

import inspect
import sys
import warnings

from imagepref.known_warnings import silence_known_warnings

ROLLOUT = (
    "You are using 'rollout_func', which is an experimental feature. This API may change or be removed at "
    "any time without prior notice."
)


def test_known_warnings_are_silenced_and_others_still_show(monkeypatch):
    import trl

    from imagepref.policy.pretrain import micro_generator

    monkeypatch.setattr(sys, "warnoptions", [])
    model = micro_generator(seed=0).model
    # TRL still warns about rollout_func in these words (from the trainer's caller, stacklevel=2).
    assert "You are using 'rollout_func', which is an experimental feature" in inspect.getsource(
        trl.GRPOTrainer.__init__
    )
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert model.is_gradient_checkpointing is False  # transformers' deprecated alias warns ...
        assert [w.category for w in seen] == [FutureWarning] and "is_gradient_checkpointing" in str(seen[0].message)
        seen.clear()
        silence_known_warnings()
        assert model.is_gradient_checkpointing is False  # ... and no longer shows
        warnings.warn_explicit(ROLLOUT, UserWarning, "grpo.py", 1, module="imagepref.policy.align.grpo")
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated, but said by someone else", FutureWarning, stacklevel=1
        )
    assert [str(w.message) for w in seen] == [
        "something else is deprecated",
        "`is_gradient_checkpointing` is deprecated, but said by someone else",
    ]


def test_warning_options_of_the_user_win(monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", ["default"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        silence_known_warnings()
        warnings.warn_explicit(ROLLOUT, UserWarning, "grpo.py", 1, module="imagepref.policy.align.grpo")
    assert [w.category for w in seen] == [UserWarning]
