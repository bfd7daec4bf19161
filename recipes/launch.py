"""One process of a multi-process align stage: ``accelerate launch --module recipes.launch SPEC.json``.

The align stage writes the aligner's arguments to ``SPEC.json`` and starts this module under
``accelerate launch`` (one GPU, DeepSpeed ZeRO, FSDP, or CPU processes with gloo); TRL's trainers
then see the distributed environment and shard the data. Every process uses the same run folder:
policy.align writes the run's files from the main process only. The stage merges the adapter
itself, in one process, after every process has finished.

With ``"record_ranks": true`` each process writes ``<out>/ranks/rank<N>.json``: a digest of every
batch of token ids it trained on and of its trainable weights at the end, so a test or a user can
check that the processes saw different data and ended with the same weights.
"""

from __future__ import annotations

import hashlib
import json
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
        (self.out / f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "rank": rank,
                    "world_size": args.world_size,
                    "batches": self.batches,
                    "weights_at_start": self.start,
                    "weights": self.weights_digest(model),
                }
            )
        )


def main(spec_file: str) -> None:
    """Run the aligner described by ``spec_file`` in this process (no merge)."""
    from imagepref.known_warnings import silence_known_warnings
    from imagepref.policy.align.pipeline import run_aligner

    silence_known_warnings()  # each process's output goes to launch.log, read by a person

    spec = json.loads(Path(spec_file).read_text())
    if spec.pop("record_ranks", False):
        # transformers 5.24: Trainer.__init__ adds the module-level DEFAULT_CALLBACKS to every
        # trainer it builds; run_aligner builds its trainer inside, so this is the way in.
        import transformers.trainer

        transformers.trainer.DEFAULT_CALLBACKS.append(RankRecord(Path(spec["out"]) / "ranks"))
    step_log = None
    if spec.get("run_log"):
        from imagepref.recipes.run_folder import RunFolder

        run_log = spec.pop("run_log")
        folder = RunFolder(Path(run_log["root"]))
        step_log = lambda line: folder.log(run_log["stage"], str(line), console=False)  # noqa: E731
    run_aligner(**spec, merge=False, step_log=step_log)


if __name__ == "__main__":
    main(sys.argv[1])
