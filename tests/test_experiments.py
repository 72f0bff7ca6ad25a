"""The shipped recipes (`experiment=NAME`) compose into valid training configs that end."""

import importlib.resources
from dataclasses import asdict

import pytest
from hydra import compose, initialize_config_module

import nmt.cli.train  # noqa: F401  (registers the config schemas)
from nmt.cli.common import to_object
from nmt.config import TrainConfig
from nmt.model.seq2seq import build_model

EXPERIMENTS = sorted(p.name[:-5] for p in (importlib.resources.files("nmt.configs") / "experiment")
                     .iterdir() if p.name.endswith(".yaml"))


def recipe(*overrides: str) -> TrainConfig:
    with initialize_config_module("nmt.configs", version_base="1.3"):
        return to_object(compose("train", overrides=list(overrides)), TrainConfig)


def test_every_recipe_is_found():
    assert {"quick", "compare", "best"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_recipe_composes_checks_and_has_an_end(name):
    cfg = recipe(f"experiment={name}", "attention=location", "seed=3")
    assert cfg.attention.name == "location" and cfg.seed == 3   # overrides still apply
    assert cfg.train.max_steps or cfg.train.max_minutes   # a budget, whatever early stopping does


def test_best_is_the_large_model_it_was_chosen_as():
    cfg = recipe("experiment=best")
    m, t = cfg.model, cfg.train
    assert (m.emb_size, m.hidden_size, m.dropout, t.batch_tokens) == (512, 1024, 0.4, 4000)
    assert t.keep_last > 0 and t.max_epochs >= 100 and t.max_steps == 8000
    model = build_model(asdict(m), asdict(cfg.attention), 8000, asdict(cfg.decoder))
    assert 32e6 < sum(p.numel() for p in model.parameters()) < 33.5e6   # 32.7M, as published
