import pickle

import pytest
import torch

from ppl_vae import ModelConfig, build_pair, load_pair, save_checkpoint
from ppl_vae.training.checkpoints import CheckpointError, load_checkpoint, warm_start

CONFIG = ModelConfig(event_shape=(1, 28, 28), z_dim=3, hidden_dims=(16,), likelihood="gaussian-pixel")


def test_round_trip_rebuilds_the_same_pair(tmp_path):
    model, guide = build_pair(CONFIG)
    save_checkpoint(tmp_path / "checkpoint.pt", model, guide, CONFIG, epoch=3)
    model2, guide2, config2 = load_pair(tmp_path)
    assert config2 == CONFIG
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(guide2.loc_scale(x), guide.loc_scale(x), rtol=0, atol=0)
    z = torch.randn(4, 3)
    torch.testing.assert_close(model2.decoder(z), model.decoder(z), rtol=0, atol=0)
    torch.testing.assert_close(model2.likelihood.log_scale, model.likelihood.log_scale, rtol=0, atol=0)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["extra"] == {"epoch": 3}
    assert list(tmp_path.iterdir()) == [tmp_path / "checkpoint.pt"]  # no temporary file left


def test_truncated_checkpoint_is_refused(tmp_path):
    model, guide = build_pair(CONFIG)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, guide, CONFIG)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot load checkpoint .*checkpoint.pt"):
        load_pair(path)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_with_code_is_refused_without_running(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "ppl_vae/1", "model": _Payload(str(target))}, f)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not target.exists()


def test_foreign_and_missing_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ppl_vae checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_pair(tmp_path / "nothing")


def test_warm_start_copies_a_finished_runs_weights(tmp_path):
    model, guide = build_pair(CONFIG)
    save_checkpoint(tmp_path / "checkpoint.pt", model, guide, CONFIG, epoch=7)
    fresh_model, fresh_guide = build_pair(CONFIG)
    source = warm_start(tmp_path, fresh_model, fresh_guide, CONFIG)
    assert source == {"path": str(tmp_path / "checkpoint.pt"), "epoch": 7}
    for trained, copied in ((model, fresh_model), (guide, fresh_guide)):
        for (name, value), (_, copy) in zip(trained.state_dict().items(), copied.state_dict().items()):
            torch.testing.assert_close(copy, value, rtol=0, atol=0, msg=name)


def test_warm_start_refuses_another_architecture(tmp_path):
    model, guide = build_pair(CONFIG)
    save_checkpoint(tmp_path / "checkpoint.pt", model, guide, CONFIG)
    other = ModelConfig(event_shape=(1, 28, 28), z_dim=5, hidden_dims=(16,), likelihood="gaussian-pixel")
    fresh_model, fresh_guide = build_pair(other)
    before = {name: value.clone() for name, value in fresh_model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"holds another model: z_dim 3 \(asked: 5\)"):
        warm_start(tmp_path, fresh_model, fresh_guide, other)
    for name, value in fresh_model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
