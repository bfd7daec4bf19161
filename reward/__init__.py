"""Multi-head reward models: preference losses, training, evaluation and scoring.

Python API::

    from imagepref.reward import load_reward_model, train_reward_model, RewardConfig
    model = load_reward_model("runs/reward")                  # config.json + model.safetensors
    scores = model.score(images=images, prompts=prompts)      # {axis: (batch,) tensor}, raw
    rewards = model.combined_reward(images=images, prompts=prompts)   # normalised, mixed, safety-gated
    unsure = model.uncertainty({"images": a, "prompts": p}, {"images": b, "prompts": p})
    # a model of edits (trained on preference data about edits; token backbone) reads the source too:
    scores = model.score(tokens=results, source_tokens=sources, instructions=instructions)
    from imagepref.reward.scoring import pair_scores
    table = pair_scores(model, ["workspace/candidates"])     # per pair: P(a wins), uncertainty, disagreement

``reward`` imports neither ``eval``, ``labeling`` nor ``recipes``; ``policy`` only lazily (the
token backbone and the glyph-world data builder).

The names below are imported on first use, so ``reward.config`` (pydantic only) can be imported
to check settings and saved reward models without importing torch.
"""

from imagepref.lazy import lazy_attributes

_HOMES = {
    "RewardConfig": "config",
    "PreferenceSet": "data",
    "read_preferences": "data",
    "split_by_prompt": "data",
    "evaluate_reward_model": "evaluation",
    "outcome_probabilities": "losses",
    "preference_loss": "losses",
    "RewardModel": "model",
    "load_reward_model": "model",
    "score_candidates": "model",
    "TrainingDivergedError": "train",
    "TrainResult": "train",
    "train_reward_model": "train",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_attributes(__name__, _HOMES)
