"""Multi-head reward models: preference losses, training, evaluation and scoring.

Python API::

    from imagepref.reward import load_reward_model, train_reward_model, RewardConfig
    model = load_reward_model("runs/reward")                  # config.json + model.safetensors
    scores = model.score(images=images, prompts=prompts)      # {axis: (batch,) tensor}, raw
    rewards = model.combined_reward(images=images, prompts=prompts)   # normalised, mixed, safety-gated
    unsure = model.uncertainty({"images": a, "prompts": p}, {"images": b, "prompts": p})
    from imagepref.reward.scoring import pair_scores
    table = pair_scores(model, ["workspace/candidates"])     # per pair: P(a wins), uncertainty, disagreement

``reward`` imports neither ``eval``, ``labeling`` nor ``recipes``; ``policy`` only lazily (the
token backbone and the glyph-world data builder).
"""

from imagepref.reward.config import RewardConfig
from imagepref.reward.data import PreferenceSet, read_preferences, split_by_prompt
from imagepref.reward.evaluation import evaluate_reward_model
from imagepref.reward.losses import outcome_probabilities, preference_loss
from imagepref.reward.model import RewardModel, load_reward_model, score_candidates
from imagepref.reward.train import TrainingDivergedError, TrainResult, train_reward_model

__all__ = [
    "PreferenceSet",
    "RewardConfig",
    "RewardModel",
    "TrainResult",
    "TrainingDivergedError",
    "evaluate_reward_model",
    "load_reward_model",
    "outcome_probabilities",
    "preference_loss",
    "read_preferences",
    "score_candidates",
    "split_by_prompt",
    "train_reward_model",
]
