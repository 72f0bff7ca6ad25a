"""The Hydra launcher settings we ship compose against the launcher plugins' schemas."""

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import open_dict

import nmt.cli.train  # noqa: F401  (registers the config schemas)

LAUNCHERS = {
    "slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "parallel": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
}


def train_config(*overrides: str):
    with initialize_config_module("nmt.configs", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_config_composes_and_instantiates(name):
    cfg = train_config(f"hydra/launcher={name}", "attention=luong_general", "seed=2")
    assert cfg.hydra.launcher._target_ == LAUNCHERS[name]
    assert cfg.attention.name == "luong_general" and cfg.seed == 2
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == LAUNCHERS[name].rsplit(".", 1)[1]


def test_slurm_settings():
    launcher = train_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu").hydra.launcher
    assert (launcher.partition, launcher.tasks_per_node, launcher.gpus_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min == 240 and launcher.submitit_folder.endswith(".submitit/%j")


@pytest.mark.parametrize("override", ["hydra.launcher.timeout_mins=5",
                                      "hydra.launcher.n_jobz=3"])
def test_a_misspelt_launcher_key_is_refused(override):
    name = "slurm" if "timeout" in override else "parallel"
    with pytest.raises(ConfigCompositionException):
        train_config(f"hydra/launcher={name}", override)


def test_sweep_run_folders_are_named_by_the_configs_chosen():
    """location_smooth is a config of the mechanism named location: its run folder says which,
    as nmt-compare's labels do."""
    cfg = train_config("attention=location_smooth", "decoder=bahdanau", "seed=3")
    with open_dict(cfg):
        cfg.hydra.job.num = 4   # set by the launcher for each job
    assert cfg.attention.name == "location"
    assert cfg.hydra.sweep.subdir == "4_location_smooth_bahdanau_seed3"
