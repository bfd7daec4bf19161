"""The multi-head reward model: a shared backbone, one head per axis, saved as a folder.

A saved model is ``config.json`` (the ``RewardConfig``, including each head's normalisation
statistics on the training candidates) and ``model.safetensors``. A CLIP/SigLIP model saves only
what it trained (heads, LoRA); its frozen backbone is reloaded from ``backbone_path``. A model may
be a deep ensemble (``config.members`` networks, ``members.K.*`` in the weights file): its scores
are the members' mean, and their spread is one more measure of how unsure it is.

``score`` gives raw per-axis scores; ``combined_reward`` turns them into one number for RL
(normalised heads mixed by weight, safety as a gate or a penalty); ``pair_probabilities`` and
``uncertainty`` give P(a beats b) per axis and how unsure the model is about a pair, which
labeling uses to pick pairs for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from imagepref.errors import BadInputError
from imagepref.files import replaced_on_success, write_text_atomically
from imagepref.reward.backbones import BACKBONES
from imagepref.reward.config import RewardConfig, check_scored_set, read_model_config
from imagepref.reward.losses import outcome_probabilities

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class RewardMember(nn.Module):
    """One trained network: backbone + one MLP head per axis + a learned tie parameter per axis."""

    def __init__(self, config: RewardConfig):
        super().__init__()
        self.backbone = BACKBONES[config.backbone](config)
        width = config.width
        self.axes = list(config.axes)
        self.heads = nn.ModuleDict(
            {
                axis: nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
                for axis in config.axes
            }
        )
        self.tie_param = nn.Parameter(torch.zeros(len(config.axes)))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        features = self.backbone(**inputs)
        return torch.cat([self.heads[axis](features) for axis in self.axes], dim=-1).float()


class RewardModel(nn.Module):
    """``config.members`` independently trained ``RewardMember`` networks (a deep ensemble; one by
    default except for the pixel backbone). Scores are the members' mean raw scores, the tie
    parameter their mean; the members' spread is the ``disagreement`` of ``uncertainty``."""

    def __init__(self, config: RewardConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(RewardMember(config) for _ in range(config.members))

    @property
    def axes(self) -> list[str]:
        """The axes this model scores, in head order."""
        return list(self.config.axes)

    @property
    def backbone(self) -> nn.Module:
        """The first member's backbone; every member has the same architecture and input format."""
        return self.members[0].backbone

    @property
    def tie_param(self) -> torch.Tensor:
        """Per axis, the members' mean tie parameter."""
        return torch.stack([m.tie_param for m in self.members]).mean(0)

    @classmethod
    def create(cls, config: RewardConfig, generator=None) -> RewardModel:
        """A freshly initialised model; the token backbone copies ``generator``'s embeddings."""
        if config.backbone == "token":
            if generator is None:
                raise BadInputError(
                    "the token backbone needs the generator whose tokens it reads: pass --generator DIR"
                )
            table = generator.model.get_input_embeddings().weight
            config = config.model_copy(
                update={
                    "image_token_start": generator.config.image_token_start,
                    "num_image_tokens": generator.config.num_image_tokens,
                    "tokens_per_image": generator.config.tokens_per_image,
                    "embedding_dim": table.shape[1],
                }
            )
        torch.manual_seed(config.seed)
        model = cls(config)
        if config.backbone == "token":
            for member in model.members:
                member.backbone.copy_generator_embeddings(generator)
        return model

    # ----- scoring -------------------------------------------------------------------------
    def prepare(
        self,
        images: Sequence[Image.Image] | None,
        prompts: Sequence[str],
        tokens=None,
        source_tokens=None,
        instructions: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Inputs to the backbone's tensors (CPU); see ``forward``. An edit model reads each result
        with its source's tokens and its instruction (in place of the prompt)."""
        self.check_edit_inputs(source_tokens, instructions)
        if self.config.edits:
            return self.backbone.prepare(None, [], tokens, source_tokens, list(instructions))
        count = len(images) if images is not None else len(tokens) if tokens is not None else 0
        if count != len(prompts):
            raise BadInputError(
                f"got {count} images or token rows but {len(prompts)} prompts; pass one prompt per image"
            )
        return self.backbone.prepare(list(images) if images is not None else None, list(prompts), tokens)

    def check_edit_inputs(self, source_tokens, instructions) -> None:
        """One line when an edit model lacks the source or the instruction, or an image model gets them."""
        if self.config.edits and (source_tokens is None or instructions is None):
            raise BadInputError(
                "this reward model scores edits: pass the results' tokens with source_tokens (the source "
                "images' image tokens) and instructions"
            )
        if not self.config.edits and (source_tokens is not None or instructions is not None):
            raise BadInputError(
                "this reward model scores images, not edits (it was trained on preference data without "
                "instructions); train one on preference data about edits to score edits"
            )

    def member_scores(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Each member's raw head scores (members, batch, axes) for prepared inputs."""
        return torch.stack([member(**inputs) for member in self.members])

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Raw head scores (batch, axes) for prepared inputs: the members' mean."""
        return self.member_scores(**inputs).mean(0)

    @property
    def device(self) -> torch.device:
        return self.members[0].tie_param.device

    @torch.no_grad()
    def raw_scores(
        self,
        images=None,
        prompts: Sequence[str] = (),
        tokens=None,
        batch_size: int = 256,
        per_member: bool = False,
        source_tokens=None,
        instructions: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Raw scores (batch, axes) on CPU, computed in batches; ``per_member``: (members, batch, axes).
        An edit model needs ``source_tokens`` and ``instructions`` (one per result; ``prompts`` may
        then be left out); an image model refuses them."""
        self.check_edit_inputs(source_tokens, instructions)
        was_training = self.training
        self.eval()
        count = len(instructions) if self.config.edits else len(prompts)
        out = []
        for start in range(0, count, batch_size):
            chunk = slice(start, start + batch_size)
            inputs = self.prepare(
                images[chunk] if images is not None else None,
                prompts[chunk],
                tokens[chunk] if tokens is not None else None,
                source_tokens[chunk] if source_tokens is not None else None,
                instructions[chunk] if instructions is not None else None,
            )
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            out.append((self.member_scores(**inputs) if per_member else self(**inputs)).cpu())
        self.train(was_training)
        if not out:
            return torch.zeros(
                (len(self.members), 0, len(self.config.axes)) if per_member else (0, len(self.config.axes))
            )
        return torch.cat(out, dim=1 if per_member else 0)

    def score(
        self,
        images: Sequence[Image.Image] | None = None,
        prompts: Sequence[str] = (),
        tokens=None,
        batch_size: int = 256,
        normalised: bool = False,
        source_tokens=None,
        instructions: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-axis scores ``{axis: (batch,) tensor}`` of images (or image tokens) for their prompts,
        or for an edit model of results (``tokens``) for their ``source_tokens`` and ``instructions``.

        Raw head scores by default (differences are BT log-odds); ``normalised=True`` subtracts each
        head's training mean and divides by its scale, which makes heads comparable and mixable.
        """
        scores = self.raw_scores(
            images, list(prompts), tokens, batch_size, source_tokens=source_tokens, instructions=instructions
        )
        if normalised:
            scores = self.normalise(scores)
        return {axis: scores[:, i] for i, axis in enumerate(self.config.axes)}

    def normalise(self, scores: torch.Tensor) -> torch.Tensor:
        """Raw scores (batch, axes) to normalised ones with the saved per-head statistics."""
        stats = [self.config.normalisation.get(axis) for axis in self.config.axes]
        mean = torch.tensor([s.mean if s else 0.0 for s in stats])
        scale = torch.tensor([s.scale if s else 1.0 for s in stats])
        return (scores - mean) / scale

    def safety_threshold(self) -> float:
        """The normalised safety score below which an image counts as unsafe (configured, else
        the cut learned in training, else 0)."""
        if self.config.safety_threshold is not None:
            return self.config.safety_threshold
        return self.config.safety_cut if self.config.safety_cut is not None else 0.0

    def unsafe_from_scores(self, raw: torch.Tensor) -> torch.Tensor | None:
        """Per image, whether the safety head calls it unsafe (None when the model has no safety head)."""
        if self.config.safety_axis not in self.config.axes:
            return None
        return self.normalise(raw)[:, self.config.axes.index(self.config.safety_axis)] < self.safety_threshold()

    def combined_from_scores(self, raw: torch.Tensor) -> torch.Tensor:
        """The combined RL reward from raw scores (batch, axes); see ``combined_reward``."""
        z = self.normalise(raw)
        axes = self.config.axes
        safety = self.config.safety_axis if self.config.safety_axis in axes else None
        mixed_axes = [a for a in axes if a != safety]
        weights = torch.tensor([self.config.mix_weights.get(a, 1.0) for a in mixed_axes])
        columns = [axes.index(a) for a in mixed_axes]
        mixed = (z[:, columns] * weights).sum(-1) / weights.sum().clamp(min=1e-12) if columns else torch.zeros(len(z))
        if safety is None:
            return mixed
        threshold = self.safety_threshold()
        z_safety = z[:, axes.index(safety)]
        if self.config.safety_mode == "gate":
            return torch.where(z_safety < threshold, torch.full_like(mixed, self.config.gate_reward), mixed)
        # P(unsafe): how far below the cut, as a logistic in normalised units.
        return mixed - self.config.safety_penalty * torch.sigmoid(4.0 * (threshold - z_safety))

    def combined_reward(
        self,
        images: Sequence[Image.Image] | None = None,
        prompts: Sequence[str] = (),
        tokens=None,
        batch_size: int = 256,
        source_tokens=None,
        instructions: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """One reward per image for RL: the normalised non-safety heads mixed with ``mix_weights``,
        then safety applied as a gate (an unsafe image gets ``gate_reward`` whatever else it scores)
        or as a penalty (``safety_penalty`` x P(unsafe)), per ``safety_mode``. An edit model takes
        ``source_tokens`` and ``instructions`` as ``score`` does."""
        return self.combined_from_scores(
            self.raw_scores(
                images, list(prompts), tokens, batch_size, source_tokens=source_tokens, instructions=instructions
            )
        )

    def pair_probabilities(self, scores_a: torch.Tensor, scores_b: torch.Tensor) -> torch.Tensor:
        """(pairs, axes, 3): P(a wins), P(b wins), P(tie) under the trained tie model."""
        with torch.no_grad():
            return outcome_probabilities(scores_a - scores_b, self.tie_param.detach().cpu(), self.config.ties)

    def uncertainty(self, a: dict, b: dict, ensemble: Sequence[RewardModel] = ()) -> dict[str, torch.Tensor]:
        """How unsure the model is about each pair, for choosing pairs to show people.

        ``a`` and ``b`` are keyword arguments of ``score`` for the two sides (``images``/``tokens``
        and ``prompts``). Returns what ``uncertainty_from_scores`` returns; other models passed as
        ``ensemble`` add their members' opinions to ``disagreement``."""
        others = [
            model.member_p_a(model.raw_scores(**a, per_member=True), model.raw_scores(**b, per_member=True))
            for model in ensemble
        ]
        return self.uncertainty_from_scores(
            self.raw_scores(**a, per_member=True), self.raw_scores(**b, per_member=True), others
        )

    def member_p_a(self, raw_a: torch.Tensor, raw_b: torch.Tensor) -> torch.Tensor:
        """P(a preferred), ties shared out, per member: (members, pairs, axes) from per-member raw
        scores of the two sides (``raw_scores(..., per_member=True)``)."""
        probs = torch.stack(
            [
                outcome_probabilities(d, m.tie_param.detach().cpu(), self.config.ties)
                for d, m in zip(raw_a - raw_b, self.members)
            ]
        )
        return probs[..., 0] + probs[..., 2] / 2

    def uncertainty_from_scores(
        self, raw_a: torch.Tensor, raw_b: torch.Tensor, others: Sequence[torch.Tensor] = ()
    ) -> dict[str, torch.Tensor]:
        """The pair view of per-member raw scores (members, pairs, axes) of the two sides.

        ``<axis>_p_a``: the model's P(a preferred) (from the members' mean scores, ties shared out);
        ``uncertainty``: mean over axes of 1 - |2p - 1| (1 at p = 0.5). When there are several
        opinions (this model's members, plus ``others``: more (members, pairs, axes) P(a) tensors),
        ``disagreement`` is the mean over axes of the standard deviation of their P(a)."""
        mean = self.pair_probabilities(raw_a.mean(0), raw_b.mean(0))
        p = mean[..., 0] + mean[..., 2] / 2
        out = {f"{axis}_p_a": p[:, i] for i, axis in enumerate(self.config.axes)}
        out["uncertainty"] = (1 - (2 * p - 1).abs()).mean(-1)
        opinions = torch.cat([self.member_p_a(raw_a, raw_b), *others])
        if len(opinions) > 1:
            out["disagreement"] = opinions.std(0).mean(-1)
        return out

    # ----- saving and loading ---------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights a saved folder holds (a CLIP backbone's frozen weights are left out)."""
        skip = self._frozen_keys()
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k not in skip}

    def _frozen_keys(self) -> set[str]:
        """State-dict keys of weights that are reloaded from ``backbone_path`` rather than saved."""
        return {
            f"members.{i}.backbone.{k}"
            for i, member in enumerate(self.members)
            for k in (member.backbone.frozen_keys() if hasattr(member.backbone, "frozen_keys") else ())
        }

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``path`` (created if needed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # Each file is written under a temp name and renamed, weights before config, so a reader
        # never sees half a file; other files in the folder (TensorBoard logs) are left alone.
        with replaced_on_success(path / WEIGHTS_FILE) as weights_tmp:
            save_file(self.trainable_state(), str(weights_tmp))
        write_text_atomically(path / CONFIG_FILE, self.config.model_dump_json(indent=2))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> RewardModel:
        """Load a saved reward model folder exactly as it was saved (eval mode)."""
        path = Path(path)
        weights_file = path / WEIGHTS_FILE
        model = cls(read_model_config(path))
        state = load_file(str(weights_file))
        if model.config.members == 1 and not any(k.startswith("members.") for k in state):
            state = {f"members.0.{k}": v for k, v in state.items()}  # a folder saved before ensembles existed
        built = model.state_dict()
        misfit = next((k for k, v in state.items() if k in built and built[k].shape != v.shape), None)
        if misfit is not None:
            raise BadInputError(
                f"{weights_file} holds {misfit} of shape {tuple(state[misfit].shape)} where its config builds "
                f"{tuple(built[misfit].shape)}: the folder was saved by another imagepref version or "
                "edited by hand; retrain it with `imagepref reward train`"
            )
        missing, unexpected = model.load_state_dict(state, strict=False)
        skip = model._frozen_keys()
        missing = [k for k in missing if k not in skip]
        if missing or unexpected:
            raise BadInputError(
                f"{weights_file} does not match its config ({len(missing)} missing, {len(unexpected)} "
                f"unexpected weights, e.g. {(missing or unexpected)[0]}); the folder is damaged"
            )
        model.eval()
        if device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        return model


def load_reward_model(
    path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> RewardModel:
    """Load a reward model folder (``config.json`` + ``model.safetensors``) for scoring."""
    return RewardModel.from_pretrained(path, device=device, dtype=dtype)


def score_candidates(model: RewardModel, prefs, ids, batch_size: int = 256, per_member: bool = False) -> torch.Tensor:
    """Raw scores (len(ids), axes) of candidates of a ``PreferenceSet``: their image tokens for the
    token backbone, their images otherwise; (members, len(ids), axes) with ``per_member``. An edit
    model reads each result with its source's tokens and its instruction."""
    ids = list(ids)
    prompts = [str(prefs.candidates.at[c, "prompt"]) for c in ids]
    if ids:
        edits = prefs.candidates.loc[ids, "instruction"].notna() if "instruction" in prefs.candidates else None
        check_scored_set(model.config, edits is not None and bool(edits.all() if model.config.edits else edits.any()))
    if model.config.edits:
        return model.raw_scores(
            None,
            prompts,
            prefs.tokens(ids),
            batch_size,
            per_member=per_member,
            source_tokens=prefs.source_tokens(ids),
            instructions=prefs.instructions(ids),
        )
    if model.config.backbone == "token" or not ids:
        return model.raw_scores(None, prompts, prefs.tokens(ids) if ids else [], batch_size, per_member=per_member)
    chunks = [
        model.raw_scores(
            prefs.load_images(ids[i : i + batch_size]),
            prompts[i : i + batch_size],
            None,
            batch_size,
            per_member=per_member,
        )
        for i in range(0, len(ids), batch_size)
    ]
    return torch.cat(chunks, dim=1 if per_member else 0)
