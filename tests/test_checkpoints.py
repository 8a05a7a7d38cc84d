"""dlcourse.checkpoints: atomic saves, safe loads, clear errors, and the load-or-train cache."""

import pickle

import pytest
import torch
from torch import nn

from dlcourse.checkpoints import CheckpointError, load_checkpoint, load_or_train, load_weights, save_checkpoint


class Arbitrary:
    """An object that weights_only loading must refuse."""


def test_round_trip(tmp_path):
    path = save_checkpoint({"model": {"w": torch.arange(3.0)}, "step": 7}, tmp_path / "sub" / "a.pt")
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.arange(3.0))


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = save_checkpoint({"step": 1}, tmp_path / "a.pt")
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a local lambda cannot be pickled
        save_checkpoint({"step": 2, "bad": lambda: None}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


@pytest.mark.parametrize("kept", [0, 1, 10, 200, -1], ids=["empty", "1-byte", "10-bytes", "200-bytes", "last-byte-cut"])
def test_truncated_file_is_reported_as_corrupt(kept, tmp_path):
    path = save_checkpoint({"model": {"w": torch.randn(100)}}, tmp_path / "a.pt")
    path.write_bytes(path.read_bytes()[:kept])
    with pytest.raises(CheckpointError, match="corrupt.*Delete it"):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")  # no format marker
    with pytest.raises(CheckpointError, match="not a dlcourse checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "x", "obj": Arbitrary()}, tmp_path / "code.pt")  # unpickling it would run our code
    with pytest.raises(CheckpointError, match="could not be loaded"):
        load_checkpoint(tmp_path / "code.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_weights_names_what_does_not_fit():
    small, big = nn.Linear(2, 3), nn.Linear(2, 4)
    with pytest.raises(CheckpointError, match=r"weight: model \(4, 2\) vs checkpoint \(3, 2\)"):
        load_weights(big, small.state_dict())
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3)), nn.Sequential(nn.Linear(2, 3)).state_dict())


def test_load_or_train_trains_once_then_loads(tmp_path):
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return {"loss_history": [3.0, 2.0]}

    def build():
        return nn.Linear(2, 2)

    model, extra = load_or_train("toy", {"width": 2}, build, train, directory=tmp_path)
    again, extra_again = load_or_train("toy", {"width": 2}, build, train, directory=tmp_path)
    assert len(calls) == 1 and extra == extra_again == {"loss_history": [3.0, 2.0]}
    assert torch.equal(again.weight, torch.full((2, 2), 0.5)) and not again.training
    load_or_train("toy", {"width": 3}, build, train, directory=tmp_path)  # another config: another file
    assert len(calls) == 2 and len(list(tmp_path.glob("toy-*.pt"))) == 2
    with pytest.raises(TypeError, match="JSON-serialisable"):
        load_or_train("toy", {"width": object()}, build, train, directory=tmp_path)
