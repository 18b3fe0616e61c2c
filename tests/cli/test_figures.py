"""Figures: interpolations, the 2-D latent scatter and curves of several runs."""

import pandas as pd
import pytest
import torch
from PIL import Image

from ppl_vae import ModelConfig, build_pair
from ppl_vae.cli.figures import plot_latent_scatter, plot_runs, save_interpolations


def test_interpolations_have_one_row_per_pair_and_num_steps_columns(tmp_path):
    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=2, hidden_dims=(16,)))
    save_interpolations(model, guide, torch.rand(6, 1, 28, 28), tmp_path / "i.png", num_steps=5)
    width, height = Image.open(tmp_path / "i.png").size
    assert (width, height) == (5 * 30 + 2, 3 * 30 + 2)  # 28 pixels + 2 of padding per cell


def test_latent_scatter_needs_two_latents(tmp_path):
    _, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=2, hidden_dims=(16,)))
    plot_latent_scatter(guide, torch.rand(50, 1, 28, 28), torch.arange(50) % 10, tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").size[0] > 100
    _, guide3 = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=3, hidden_dims=(16,)))
    with pytest.raises(ValueError, match="z_dim = 2"):
        plot_latent_scatter(guide3, torch.rand(5, 1, 28, 28), torch.arange(5), tmp_path / "t.png")


def test_curves_of_several_runs_on_one_plot(tmp_path):
    runs = {name: pd.DataFrame({"epoch": [1, 2], "valid_elbo": [-100.0, -98.0 + i]}) for i, name in enumerate("ab")}
    plot_runs(runs, tmp_path / "c.png", "valid_elbo")
    assert (tmp_path / "c.png").stat().st_size > 1000
