"""The weight average (--ema_decay): its arithmetic, the swap in and out, and resuming with it."""

import pytest
import torch
from hybrid_rearec.hybrid.config import TrainConfig
from hybrid_rearec.hybrid.ema import UPDATES_KEY, WeightAverage
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.train import train
from safetensors.torch import load_file
from torch import nn


def test_average_follows_the_warmed_up_decay_and_swaps_in_and_out():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen: not averaged
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = WeightAverage(model, decay=0.99)
    assert set(average.shadow) == {"weight"}
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update()  # decay min(0.99, 2 / 11): shadow = 1 + (1 - 2/11) * (3 - 1)
    expected = 1 + (1 - 2 / 11) * 2
    assert torch.allclose(average.shadow["weight"], torch.full((2, 3), expected))
    with average.applied():
        assert torch.allclose(model.weight, torch.full((2, 3), expected))
    assert torch.equal(model.weight, torch.full((2, 3), 3.0))  # the trained weights are back
    restored = WeightAverage(model, decay=0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1 and torch.equal(restored.shadow["weight"], average.shadow["weight"])
    with pytest.raises(ValueError, match="lacks"):
        restored.load_state_dict({UPDATES_KEY: torch.tensor(1)})


def test_ema_decay_is_validated():
    with pytest.raises(ConfigError, match=r"ema_decay must be in \(0, 1\)"):
        TrainConfig(ema_decay=1.0)


def test_run_with_weight_average_resumes_to_the_same_model(tmp_path, csv_data_config, tiny_model_config):
    def config(name, epochs, **extra):
        return TrainConfig(
            output_dir=str(tmp_path / name), epochs=epochs, batch_size=64, report_to="none", progress=False,
            ema_decay=0.9, **extra,
        )  # fmt: skip

    reference = train(csv_data_config, tiny_model_config, config("ref", 3))
    train(csv_data_config, tiny_model_config, config("run", 1))
    resumed = train(csv_data_config, tiny_model_config, config("run", 3, resume="latest"))
    assert resumed["test"]["metrics"] == reference["test"]["metrics"]
    assert (tmp_path / "run" / "checkpoints").is_dir()
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    expected = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)

    plain = TrainConfig(output_dir=str(tmp_path / "plain"), epochs=1, batch_size=64, report_to="none", progress=False)
    train(csv_data_config, tiny_model_config, plain)
    with pytest.raises(ConfigError, match=r"other settings than this run's \(ema_decay: None in the checkpoint, 0.9"):
        train(csv_data_config, tiny_model_config, config("plain", 2, resume="latest"))
