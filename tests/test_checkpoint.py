import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import make_tiny_model
from stpl.engine.checkpoint import load_checkpoint, save_checkpoint
from stpl.errors import StplError


def test_round_trip_model_optimizer_extra(tmp_path):
    model = make_tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 17, 19), torch.randn(2, 3, 17, 19), torch.zeros(2, 2, 17, 19)).logits.sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.safetensors"
    meta = {"config": {"a": 1}, "class_names": ["x", "y"], "step": 7}
    save_checkpoint(path, model.state_dict(), meta, optimizer.state_dict(), {"teacher.w": torch.ones(3)})
    loaded = load_checkpoint(path)
    assert loaded.step == 7 and loaded.class_names == ["x", "y"] and loaded.config == {"a": 1}
    assert loaded.meta["versions"]["torch"] == torch.__version__
    # safetensors stores the bytes: a round trip is exact (no tolerance would excuse a silent cast or a copy bug)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model[key], value, rtol=0, atol=0)
    torch.testing.assert_close(loaded.extra["teacher.w"], torch.ones(3), rtol=0, atol=0)
    restored = torch.optim.SGD(make_tiny_model().parameters(), lr=0.5, momentum=0.9)
    restored.load_state_dict(loaded.optimizer)
    assert restored.param_groups[0]["lr"] == 0.1
    original_state = optimizer.state_dict()["state"]
    restored_state = restored.state_dict()["state"]
    assert sorted(original_state) == sorted(restored_state)
    for index, value in original_state.items():
        torch.testing.assert_close(restored_state[index]["momentum_buffer"], value["momentum_buffer"], rtol=0, atol=0)


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)}, {"config": {}, "class_names": [], "step": 1})
    import stpl.engine.checkpoint as module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": torch.ones(2)}, {"config": {}, "class_names": [], "step": 2})
    assert load_checkpoint(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temporary left behind


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(StplError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(StplError, match="not a readable safetensors checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign), metadata={"other": json.dumps({})})
    with pytest.raises(StplError, match="not an stpl checkpoint"):
        load_checkpoint(foreign)
