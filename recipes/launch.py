"""One process of a multi-process align stage: ``accelerate launch --module recipes.launch SPEC.json``.

The align stage writes the aligner's arguments to ``SPEC.json`` and starts this module under
``accelerate launch`` (one GPU, DeepSpeed ZeRO, FSDP, or CPU processes with gloo); TRL's trainers
then see the distributed environment and shard the data. The stage merges the adapter itself,
in one process, after every process has finished.

With ``"record_ranks": true`` each process writes ``<out>/ranks/rank<N>.json``: a digest of every
batch of token ids it trained on and of its trainable weights at the end, so a test or a user can
check that the processes saw different data and ended with the same weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback


class RankRecord(TrainerCallback):
    """Digests of the token ids this process trained on, and of its trainable weights at the end."""

    def __init__(self, out: Path) -> None:
        self.out, self.batches, self.handle, self.start = out, [], None, None

    @staticmethod
    def weights_digest(model) -> str:
        """A hash of the trainable parameters (names and values)."""
        digest = hashlib.sha256()
        for name, parameter in sorted(model.named_parameters()):
            if parameter.requires_grad:
                digest.update(name.encode())
                digest.update(parameter.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def record(module, inputs):
            # Only training forwards (grad on): the sampler, the reference and monitoring run without.
            if torch.is_grad_enabled() and inputs and torch.is_tensor(inputs[0]):
                self.batches.append(hashlib.sha256(inputs[0].detach().cpu().numpy().tobytes()).hexdigest()[:16])

        self.handle = model.get_input_embeddings().register_forward_pre_hook(record)
        self.start = self.weights_digest(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.handle.remove()
        rank = args.process_index
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank, "world_size": args.world_size, "batches": self.batches,
            "weights_at_start": self.start, "weights": self.weights_digest(model)}))


def rank_folder(out: Path, rank: int) -> Path:
    """The run folder process ``rank`` (> 0) writes to: a scratch sibling of ``out`` that shares
    its checkpoints.

    policy.align writes its run record, metrics and adapter into the run folder from every process
    it runs in; the processes of one launch would race on those files. So only process 0 writes to
    ``out``; every other process gets its own folder with a copy of the run record and links to
    ``out``'s checkpoints, so a resumed launch resumes every process from the same step (the
    trainer itself saves checkpoints from process 0 only)."""
    folder = out / "ranks" / f"rank{rank}-scratch"
    folder.mkdir(parents=True, exist_ok=True)
    if (out / "align.json").is_file():
        (folder / "align.json").write_text((out / "align.json").read_text())
    for own in folder.glob("checkpoint-*"):
        if own.is_dir() and not own.is_symlink():
            # What the trainer saved from this process (its RNG state) belongs beside process 0's
            # checkpoint, as it would be with one shared output folder.
            shared = out / own.name
            if shared.is_dir():
                for item in own.iterdir():
                    if not (shared / item.name).exists():
                        shutil.move(str(item), shared / item.name)
            shutil.rmtree(own)
    for checkpoint in out.glob("checkpoint-*"):
        link = folder / checkpoint.name
        if not link.is_symlink():
            link.symlink_to(checkpoint.resolve(), target_is_directory=True)
    return folder


def main(spec_file: str) -> None:
    """Run the aligner described by ``spec_file`` in this process (no merge)."""
    from recipes.commands.align import run_aligner

    spec = json.loads(Path(spec_file).read_text())
    if spec.pop("record_ranks", False):
        # transformers 5.24: Trainer.__init__ adds the module-level DEFAULT_CALLBACKS to every
        # trainer it builds; run_aligner builds its trainer inside, so this is the way in.
        import transformers.trainer

        transformers.trainer.DEFAULT_CALLBACKS.append(RankRecord(Path(spec["out"]) / "ranks"))

    rank = int(os.environ.get("RANK", "0"))
    if rank > 0:
        spec["out"] = str(rank_folder(Path(spec["out"]), rank))
    run_aligner(**spec, merge=False)


if __name__ == "__main__":
    main(sys.argv[1])
