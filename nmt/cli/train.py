"""nmt-train: train a model (Hydra app; any config key can be overridden, -m sweeps).

Under torchrun (`torchrun --nproc_per_node=N -m nmt.cli.train ...`) every process runs this;
rank 0 decides the run folder and writes everything, the other ranks write nothing.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from nmt import checkpoint
from nmt.cli.common import register_schemas, restore_hydra_files, to_object, user_errors
from nmt.config import TrainConfig
from nmt.device import setup_device
from nmt.distributed import Dist, env_rank, env_world_size, init_from_env
from nmt.train import run

log = logging.getLogger("nmt")
STOPPED = 3   # exit status of a run or sweep stopped by Ctrl-C or SIGTERM after saving last.pt
register_schemas()


def resumed_config(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """The config a run was started with (from its last checkpoint), with resume set and this
    command's plain key overrides (e.g. a new train.max_steps) applied on top."""
    stored = checkpoint.load(run_dir / "checkpoints" / "last.pt")["config"]
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), stored)
    overrides = [o for o in HydraConfig.get().overrides.task
                 if not o.startswith(("resume=", "hydra.", "threads=", "device="))]
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "." not in key and key != "seed":
            raise ValueError(f"{o}: a resumed run keeps its config groups; only plain keys "
                             "(e.g. train.max_steps=...) can be changed on resume")
    merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
    out = to_object(merged, TrainConfig)
    out.resume = str(run_dir)
    out.device, out.threads = cfg.device, cfg.threads
    return out


IGNORED = {"resume", "device", "threads"}   # what a continued run may run with anew


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def same_settings(run_dir: Path, conf: TrainConfig) -> None:
    """A run folder's run may be continued by this command only if the command asks for the
    same settings; otherwise a ValueError names the keys that differ."""
    stored = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                             checkpoint.load(run_dir / "checkpoints" / "last.pt")["config"])
    old, new = flat(OmegaConf.to_container(stored)), flat(asdict(conf))
    differ = [k for k in sorted(old.keys() | new.keys())
              if k.split(".")[0] not in IGNORED and old.get(k) != new.get(k)]
    if differ:
        restore_hydra_files()   # the folder's record stays that of its run
        shown = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} here" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ValueError(f"{run_dir} already holds a run with other settings ({shown}{more}); "
                         f"continue it with `nmt-train resume={run_dir}` (plain keys such as "
                         "train.max_steps may change there) or train in another hydra.run.dir")


@user_errors
def train_main(cfg: DictConfig) -> float:
    conf = to_object(cfg, TrainConfig)
    dist = init_from_env(setup_device(conf.device, conf.threads))
    try:
        return train_with(conf, dist)
    finally:
        dist.close()


def train_with(conf: TrainConfig, dist: Dist) -> float:
    extend = True
    if conf.resume:
        run_dir = Path(conf.resume)
        conf = resumed_config(run_dir, conf)
        if dist.is_main:
            handler = logging.FileHandler(run_dir / "train.log")
            fmt = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
            handler.setFormatter(logging.Formatter(fmt))
            logging.getLogger().addHandler(handler)
    else:
        run_dir = Path(dist.broadcast(HydraConfig.get().runtime.output_dir))  # rank 0's
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # The same sweep again (same hydra.sweep.dir): finished runs are skipped and
            # interrupted ones continue from their last checkpoint.
            summary = run_dir / "summary.json"
            if summary.is_file():
                done = json.loads(summary.read_text())
                log.info("%s already finished (%s): skipped", run_dir,
                         done["progress"]["finished"])
                return done["progress"]["best_bleu"]
            if (run_dir / "checkpoints" / "last.pt").is_file():
                log.info("%s was interrupted: resuming from its last checkpoint", run_dir)
                conf.resume = str(run_dir)
                extend = False
        elif any((run_dir / f).is_file() for f in ("checkpoints/last.pt", "summary.json")):
            # The same command again into a fixed hydra.run.dir (a requeued job): it continues
            # the run there, or leaves it be if it finished; never trains over it from scratch.
            if (run_dir / "checkpoints" / "last.pt").is_file():
                same_settings(run_dir, conf)
            summary = run_dir / "summary.json"
            if summary.is_file():
                done = json.loads(summary.read_text())
                log.info("%s already finished (%s); nothing to do (another hydra.run.dir trains "
                         "anew)", run_dir, done["progress"]["finished"])
                return done["progress"]["best_bleu"]
            log.info("%s holds an interrupted run: resuming from its last checkpoint", run_dir)
            conf.resume = str(run_dir)
            extend = False
    log.info("run folder: %s%s", run_dir, f" ({dist.world_size} processes)" if dist.enabled
             else "")
    log.debug("config: %s", asdict(conf))
    summary = run(conf, run_dir, dist, extend)
    hydra_cfg = HydraConfig.get()
    if summary["progress"]["finished"] == "interrupted":
        # Not done: a non-zero status, so that `nmt-train ... && next-step` stops and a job
        # system restarts the job (exit status STOPPED).
        if hydra_cfg.mode == RunMode.RUN:
            log.info("stopped; `nmt-train resume=%s` continues", run_dir)
            sys.exit(STOPPED)
        if hydra_cfg.launcher._target_.endswith("BasicLauncher"):
            # Ctrl-C or SIGTERM stops the whole sweep, not only this run (the other launchers
            # run each job in a process of its own, which the signal ends).
            log.info("sweep stopped; the same command resumes it")
            sys.exit(STOPPED)
    return summary["progress"]["best_bleu"]


# Ranks > 0 of a torchrun job: no run folder, .hydra or log file of their own.
WORKER_OVERRIDES = ["hydra.run.dir=.", "hydra.output_subdir=null",
                    "hydra/job_logging=nmt_worker"]


@hydra.main(version_base="1.3", config_path="pkg://nmt.configs", config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    return train_main(cfg)


def main() -> None:
    if env_world_size() > 1:
        if {"-m", "--multirun"} & set(sys.argv):
            sys.exit("error: a torchrun job trains one model; sweep with a Hydra launcher "
                     "instead (nmt-train -m hydra/launcher=slurm ...)")
        if env_rank() > 0:
            sys.argv += WORKER_OVERRIDES
    hydra_main()


if __name__ == "__main__":
    main()
