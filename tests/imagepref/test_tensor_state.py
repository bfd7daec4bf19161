"""Training states saved without pickle come back exactly: an AdamW state keyed by parameter
index, Python's, numpy's and torch's RNG states, and numbered states that survive a kill."""

from __future__ import annotations

import random

import numpy as np
import torch

from imagepref.tensor_state import load_newest_state, load_state, save_numbered_state, save_state


def test_optimizer_and_rng_states_round_trip_exactly(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.random.get_rng_state(),
    }
    save_state(tmp_path, "state", state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]
    back = load_state(tmp_path, "state")

    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1.0)
    restored.load_state_dict(back["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.8, 0.95) and restored.param_groups[0]["lr"] == 1e-2
    for index, entry in optimizer.state_dict()["state"].items():
        assert all(torch.equal(value, back["optimizer"]["state"][index][key]) for key, value in entry.items())
    random.setstate(back["python"])
    np.random.set_state(back["numpy"])
    torch.random.set_rng_state(back["torch"])
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["torch"])
    assert draws == (random.random(), np.random.rand(), torch.rand(1).item())


def test_numbered_states_keep_the_newest_whole_one(tmp_path):
    for epoch in (1, 2):
        save_numbered_state(tmp_path, "training", {"epoch": epoch, "w": torch.full((2,), float(epoch))}, epoch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2"]
    # A kill while epoch 3 was written: its tensors are there, its JSON (written last) is not.
    save_state(tmp_path / "3", "training", {"epoch": 3, "w": torch.zeros(2)})
    (tmp_path / "3" / "training.json").unlink()
    newest = load_newest_state(tmp_path, "training")
    assert newest["epoch"] == 2 and torch.equal(newest["w"], torch.full((2,), 2.0))
    assert load_newest_state(tmp_path / "absent", "training") is None
