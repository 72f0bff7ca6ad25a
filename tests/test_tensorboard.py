"""train.tensorboard=true logs losses, BLEU, chrF, learning rate and the heatmaps; heatmaps carry
a colour bar and a title."""

from dataclasses import replace

import pytest
import torch

from nmt.plots import heatmap_figure
from nmt.train import Trainer
from tests.test_end_to_end import small_corpus
from tests.test_reliability import tiny_config


def test_tensorboard_gets_the_metrics_and_heatmaps(multi30k, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(small_corpus(multi30k, tmp_path / "corpus"), tmp_path / "cache")
    cfg.train = replace(cfg.train, max_steps=4, valid_every=2, log_every=1, heatmap_sentences=2,
                        tensorboard=True)
    Trainer(cfg, tmp_path / "run").fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"),
                              size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("valid/bleu", "valid/chrf", "valid/lr", "valid/val_loss", "valid/val_ppl",
                "valid/train_loss", "train/loss", "train/target_tokens_per_s"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("valid/bleu")] == [2, 4]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert {"alignment/1", "alignment/2"} <= set(tags["images"])
    assert [e.step for e in events.Images("alignment/1")] == [2, 4]


def test_heatmaps_have_a_colour_bar_and_a_title():
    a = torch.softmax(torch.randn(4, 6), dim=1)
    fig = heatmap_figure(a, list("abcde") + ["</s>"], list("xyz") + ["</s>"],
                         title="line 3, score -1.234")
    main, bar = fig.axes
    assert main.get_title() == "line 3, score -1.234"
    assert bar.get_ylabel() == "attention weight"
