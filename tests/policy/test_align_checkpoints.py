"""Checkpoints: a run killed midway resumes to the same result, adapters save, reload and merge
exactly, and an adapter is refused on another base or a folder of another run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from imagepref.errors import BadInputError
from imagepref.policy.align import DPOSettings, GRPOSettings, load_aligned, merge_run, train_dpo, train_grpo
from imagepref.policy.align.checkpoints import prepare_run, run_record
from imagepref.policy.align.dpo import build_dpo_trainer
from imagepref.policy.align.grpo import ImageGRPOTrainer, grpo_arguments, prompt_dataset
from imagepref.policy.align.training import run_training
from imagepref.policy.generator import load_generator
from imagepref.policy.pretrain import micro_generator
from imagepref.policy.sampler import teacher_forced_logprobs
from imagepref.tensor_state import load_state

PROMPTS = ['a sign that says "CAT"', 'a red sign that says "DOG"']


class Killed(Exception):
    pass


class KillAt(TrainerCallback):
    """Stops the process's training abruptly after ``step`` (as a kill would, with no final save)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed()


def pairs(generator, count=4):
    samples = generator.sample(PROMPTS * count, seed=1, decode=False)
    return [
        {
            "prompt_ids": samples.prompt_ids[2 * i],
            "chosen_ids": samples.completion_ids[2 * i].tolist(),
            "rejected_ids": samples.completion_ids[2 * i + 1].tolist(),
        }
        for i in range(count)
    ]


def adapter(run):
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def assert_pickle_free(checkpoint):
    """A checkpoint holds no pickle: optimizer and RNG tensors as safetensors, the rest as JSON."""
    names = {p.name for p in checkpoint.iterdir()}
    assert not [n for n in names if n.endswith((".pt", ".pth", ".bin", ".pkl"))], sorted(names)
    assert {
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "rng_state.safetensors",
        "rng_state.json",
        "training_args.json",
        "trainer_state.json",
        "adapter_model.safetensors",
    } <= names, sorted(names)
    state = load_state(checkpoint, "optimizer")
    assert state["state"] and all(isinstance(v, torch.Tensor) for s in state["state"].values() for v in s.values())


DPO = DPOSettings(steps=6, batch_size=2, learning_rate=3e-3, save_every=2, monitor_every=0, report_to=[])


def test_dpo_resumed_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path):
    examples = pairs(micro_generator())
    train_dpo(micro_generator(), examples, DPO, tmp_path / "whole")
    killed = tmp_path / "killed"
    generator = micro_generator()
    prepare_run(killed, run_record("dpo", DPO, None, generator), resume=False)
    trainer = build_dpo_trainer(generator, examples, DPO, killed)
    trainer.add_callback(KillAt(3))
    with pytest.raises(Killed):
        run_training(trainer, generator, DPO, killed, None)
    assert (killed / "checkpoint-2").is_dir() and not (killed / "adapter").exists()
    assert_pickle_free(killed / "checkpoint-2")
    # A checkpoint cut short by the kill (no trainer_state.json, written last) is passed over...
    partial = killed / "checkpoint-4"
    partial.mkdir()
    shutil.copy(killed / "checkpoint-2" / "adapter_model.safetensors", partial)
    # ... and one without its optimizer state is refused rather than resumed with a fresh optimizer.
    (killed / "checkpoint-2" / "optimizer.json").rename(tmp_path / "optimizer.json")
    with pytest.raises(BadInputError, match="no optimizer.json"):
        train_dpo(micro_generator(), examples, DPO, killed, resume=True)
    (tmp_path / "optimizer.json").rename(killed / "checkpoint-2" / "optimizer.json")
    train_dpo(micro_generator(), examples, DPO, killed, resume=True)
    whole, resumed = adapter(tmp_path / "whole"), adapter(killed)
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.allclose(whole[name], resumed[name], atol=1e-6), name


@pytest.mark.slow
def test_grpo_resumed_after_a_kill_draws_the_same_rollouts(tmp_path, rule_reward):
    settings = GRPOSettings(
        steps=4, batch_size=4, num_generations=2, learning_rate=1e-2, save_every=2, monitor_every=0, report_to=[]
    )
    prompts = PROMPTS * 2
    whole = train_grpo(
        micro_generator(), prompts, [rule_reward(micro_generator())], [1.0], settings, tmp_path / "whole"
    )
    killed = tmp_path / "killed"
    generator = micro_generator()
    prepare_run(killed, run_record("grpo", settings, None, generator), resume=False)
    torch.manual_seed(settings.seed)
    trainer = ImageGRPOTrainer(
        generator,
        settings,
        [rule_reward(generator)],
        grpo_arguments(settings, killed, generator, [1.0]),
        prompt_dataset(prompts),
    )
    trainer.add_callback(KillAt(3))
    with pytest.raises(Killed):
        run_training(trainer, generator, settings, killed, None)
    resumed = train_grpo(
        micro_generator(), prompts, [rule_reward(micro_generator())], [1.0], settings, killed, resume=True
    )
    rewards = [[h["reward"] for h in r["log_history"] if "reward" in h] for r in (whole, resumed)]
    assert rewards[1][-2:] == pytest.approx(rewards[0][-2:], abs=1e-6)  # steps 3 and 4: same images, same rewards
    for name, tensor in adapter(tmp_path / "whole").items():
        assert torch.allclose(tensor, adapter(killed)[name], atol=1e-5), name


def test_adapter_saves_reloads_and_merges_exactly(tmp_path, micro_folder):
    generator = load_generator(micro_folder)
    examples = pairs(generator)
    train_dpo(
        generator, examples, DPO.model_copy(update={"save_every": 100}), tmp_path / "run", base_path=str(micro_folder)
    )
    record = json.loads((tmp_path / "run" / "align.json").read_text())
    assert record["method"] == "dpo" and record["base"] == str(micro_folder) and record["finished"]["steps"] == 6
    samples = generator.sample(PROMPTS * 2, seed=7, decode=False)  # generator.model carries the trained adapter

    def logprobs(g):
        return teacher_forced_logprobs(g, samples.prompt_ids, samples.codes)

    trained = logprobs(generator)
    reloaded = logprobs(load_aligned(tmp_path / "run"))
    merged = logprobs(load_generator(merge_run(tmp_path / "run", tmp_path / "merged")))
    base = logprobs(load_generator(micro_folder))
    assert torch.allclose(reloaded, trained, atol=1e-5)
    assert torch.allclose(merged, trained, atol=1e-4)
    assert not torch.allclose(base, trained, atol=1e-3)  # the adapter does change the policy


def test_adapter_for_another_base_and_another_runs_folder_are_refused(tmp_path, micro_folder):
    generator = load_generator(micro_folder)
    train_dpo(
        generator,
        pairs(generator, 2),
        DPO.model_copy(update={"steps": 1, "save_every": 100}),
        tmp_path / "run",
        base_path=str(micro_folder),
    )
    other = tmp_path / "other-base"
    micro_generator(seed=0, model_seed=5).save_pretrained(other)
    with pytest.raises(BadInputError, match="another base"):
        load_aligned(tmp_path / "run", base=other)
    with pytest.raises(BadInputError, match="holds another run"):
        train_dpo(
            load_generator(micro_folder),
            pairs(generator, 2),
            DPO.model_copy(update={"beta": 0.5}),
            tmp_path / "run",
            resume=True,
        )
    with pytest.raises(BadInputError, match="already holds a run"):
        train_dpo(
            load_generator(micro_folder),
            pairs(generator, 2),
            DPO.model_copy(update={"steps": 1, "save_every": 100}),
            tmp_path / "run",
        )


def test_upstream_hooks(tmp_path):
    # CheckpointFiles overrides these private hooks of transformers 5.24's Trainer; this fails when
    # one is renamed or changes its signature (the override would then be skipped and a checkpoint
    # pickled), and the 1-step run shows they are called: its checkpoint holds no pickle.
    import inspect

    from transformers import Trainer

    expected = {
        "_save_optimizer_and_scheduler": ["self", "output_dir"],
        "_load_optimizer_and_scheduler": ["self", "checkpoint"],
        "_save_scaler": ["self", "output_dir"],
        "_load_scaler": ["self", "checkpoint"],
        "_save_rng_state": ["self", "output_dir"],
        "_load_rng_state": ["self", "checkpoint"],
        "_save": ["self", "output_dir", "state_dict"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(Trainer, name)).parameters) == parameters, name
    generator = micro_generator()
    train_dpo(generator, pairs(generator, 2), DPO.model_copy(update={"steps": 1, "save_every": 1}), tmp_path / "run")
    assert_pickle_free(tmp_path / "run" / "checkpoint-1")
