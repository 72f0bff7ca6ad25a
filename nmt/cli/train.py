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
from omegaconf.errors import ConfigKeyError

from nmt import checkpoint, run_lock, signals  # signals.STOPPED_RUNS: see there
from nmt.cli.common import (
    EARLIER_HYDRA_FILES,
    JobFailed,
    no_such_setting,
    register_schemas,
    restore_hydra_files,
    to_object,
    user_errors,
)
from nmt.config import FIXED, TRAINING_ONLY, TrainConfig, flat
from nmt.device import setup_device
from nmt.distributed import Dist, env_rank, env_world_size, init_from_env
from nmt.train import run

log = logging.getLogger("nmt")
STOPPED = 3   # exit status of a run or sweep stopped by Ctrl-C or SIGTERM after saving last.pt
register_schemas()


def unset_empty(stored: dict, defaults: dict) -> dict:
    """`stored` with "" as None where the key's default is None (and `resume` unset)."""
    out = {}
    for k, v in stored.items():
        if isinstance(v, dict) and isinstance(defaults.get(k), dict):
            out[k] = unset_empty(v, defaults[k])
        else:
            out[k] = None if v == "" and (k == "resume" or k in defaults
                                          and defaults[k] is None) else v
    return out


def resumed_config(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """The config a run was started with (from its last checkpoint), with resume set and this
    command's plain key overrides (e.g. a new train.max_steps) applied on top."""
    if run_dir.is_file():
        raise ValueError(f"resume={run_dir}: a file; give the run folder (the one holding "
                         "checkpoints/last.pt)")
    stored = checkpoint.load_resumable(run_dir / "checkpoints" / "last.pt")["config"]
    # Runs started before empty values were refused may hold "" where a key was meant unset.
    stored = unset_empty(stored, asdict(TrainConfig()))
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), stored)
    overrides = [o for o in HydraConfig.get().overrides.task
                 if not o.lstrip("+").startswith(("resume=", "hydra.", "threads=", "device="))]
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+")
        if key.startswith("~") or "=" not in o:
            raise ValueError(f"{o}: a resumed run keeps its keys; none can be deleted on resume")
        if "." not in key and key not in ("seed", "precision"):
            raise ValueError(f"{o}: a resumed run keeps its config groups; only plain keys "
                             "(e.g. train.max_steps=...) can be changed on resume")
    before = flat(OmegaConf.to_container(merged))
    try:   # +key= and ++key= set a key as key= does (an unknown one is refused)
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([o.lstrip("+")
                                                                 for o in overrides]))
    except ConfigKeyError as err:
        raise ValueError(no_such_setting(err.full_key)) from None
    out = to_object(merged, TrainConfig)
    after = flat(asdict(out))
    # The seed made the initial weights: another one would label the run with a seed that
    # never initialised it.
    fixed = [k for k in sorted(before) if (k.startswith(FIXED) and k not in TRAINING_ONLY
                                           or k == "seed") and before[k] != after.get(k)]
    if fixed:
        raise ValueError(f"{fixed[0]}={after.get(fixed[0])!r}: the run's weights and vocabulary "
                         f"were made with {before[fixed[0]]!r}; another value is a new run "
                         "(train it in another hydra.run.dir)")
    out.resume = str(run_dir)
    out.device, out.threads = cfg.device, cfg.threads
    return out


# What a continued run may run with anew: where files are, how often it logs.
IGNORED = ("resume", "device", "threads", "data.root", "data.cache_dir", "data.download",
           "train.log_every", "train.tensorboard", "train.save_every_minutes")


def other_settings(stored: dict, conf: TrainConfig) -> list[str]:
    """'key: there, here' for each setting of a stored run's config that this command changes."""
    old = flat(OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(TrainConfig),
                                                      stored)))
    new = flat(asdict(conf))
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} here"
            for k in sorted(old.keys() | new.keys())
            if not any(k == i or k.startswith(i + ".") for i in IGNORED)
            and old.get(k) != new.get(k)]


def same_settings(earlier: bytes, now: bytes) -> bool:
    """Whether two .hydra/config.yaml records name the same settings; a key added to the schema
    since the earlier one was written counts as its default there."""
    def settings(record: bytes) -> dict:
        loaded = OmegaConf.create(record.decode("utf-8"))
        return flat(OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(TrainConfig),
                                                           loaded)))
    try:
        return settings(earlier) == settings(now)
    except Exception:   # not a config of this schema (hand-edited, damaged): the bytes decide
        return earlier == now


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):   # missing, or cut short by a crash while written
        return None


def folder_decision(run_dir: Path, conf: TrainConfig, check: bool) -> tuple[str, object]:
    """What this command does in a run folder that may hold a run: ("fresh", None),
    ("resume", None), ("done", (best BLEU, how it ended)) or ("refuse", why). With `check`,
    a run started with other settings is refused (a plain run's folder; a sweep's folders are
    its own)."""
    last, summary = run_dir / "checkpoints" / "last.pt", run_dir / "summary.json"
    if not last.is_file() and not summary.is_file():
        return "fresh", None
    differ: list[str] = []
    finished = "done"
    step = None
    if last.is_file():
        ckpt = checkpoint.load(last)
        finished, step = ckpt["progress"]["finished"], ckpt["progress"]["step"]
        differ = other_settings(ckpt["config"], conf) if check else []
    elif check:   # checkpoints deleted: the record Hydra kept is all there is to compare
        record = run_dir / ".hydra" / "config.yaml"
        earlier = EARLIER_HYDRA_FILES.get(record)
        if earlier is not None and record.is_file() and not same_settings(
                earlier, record.read_bytes()):
            differ = ["its .hydra/config.yaml"]
    if differ:
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        return "refuse", (f"{run_dir} already holds a run with other settings "
                          f"({', '.join(differ[:4])}{more}); continue it with `nmt-train "
                          f"resume={run_dir}` (plain keys such as train.max_steps may change "
                          "there) or train in another hydra.run.dir")
    if finished in ("", "interrupted"):
        return "resume", None   # a summary.json there is an earlier end's, extended since
    done = read_summary(summary)
    if done is not None and step in (None, done["progress"]["step"]):
        return "done", (done["progress"]["best_bleu"], done["progress"]["finished"])
    if last.is_file():   # training ended (again, if the summary is an earlier end's): the
        return "resume", None   # test sets and summary.json follow
    return "refuse", f"{summary}: unreadable, and no checkpoint to finish the run from"


@user_errors
def train_main(cfg: DictConfig) -> float:
    if resuming_in_place(cfg):   # resume=RUN hydra.run.dir=RUN: RUN/.hydra stays the record of
        restore_hydra_files()    # how the run began, also when this command is refused
    conf = to_object(cfg, TrainConfig)
    dist = init_from_env(setup_device(conf.device, conf.threads))
    try:
        result = train_with(conf, dist)
    except SystemExit as stop:   # stopped by a signal after saving: the others end in step
        dist.close(finished=stop.code == STOPPED)
        raise
    except BaseException:
        dist.close(finished=False)
        raise
    dist.close()
    return result


def resuming_in_place(cfg: DictConfig) -> bool:
    resume = cfg.get("resume")
    return bool(resume) and (Path(str(resume)).resolve()
                             == Path(HydraConfig.get().runtime.output_dir).resolve())


def take_folder(run_dir: Path, dist: Dist, held: list) -> str | None:
    """Rank 0 locks the run folder; every rank hears whether another process has it."""
    busy = None
    if dist.is_main:
        try:
            held.append(run_lock.hold(run_dir))
        except run_lock.FolderBusy as err:
            busy = str(err)
    return dist.broadcast(busy)


def train_with(conf: TrainConfig, dist: Dist) -> float:
    if signals.STOPPED_RUNS and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise JobFailed(f"not started: this process stopped {signals.STOPPED_RUNS[0]} on a stop "
                        "signal; the same command resumes the sweep")
    held: list = []   # the run folder's lock, while this job trains there (rank 0)
    try:
        return train_in_folder(conf, dist, held)
    finally:
        for lock in held:
            run_lock.release(lock)


def train_in_folder(conf: TrainConfig, dist: Dist, held: list) -> float:
    extend = True
    if conf.resume:
        run_dir = Path(conf.resume)
        conf = resumed_config(run_dir, conf)
        busy = take_folder(run_dir, dist, held)
        if busy:
            raise ValueError(busy)
        here = Path(HydraConfig.get().runtime.output_dir).resolve() == run_dir.resolve()
        if dist.is_main and not here:   # (there, Hydra's own log file is RUN/train.log)
            handler = logging.FileHandler(run_dir / "train.log")
            fmt = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
            handler.setFormatter(logging.Formatter(fmt))
            logging.getLogger().addHandler(handler)
    else:
        run_dir = Path(dist.broadcast(HydraConfig.get().runtime.output_dir))  # rank 0's
        # The same command again (a sweep, or a requeued job with a fixed hydra.run.dir): a
        # finished run is left as it is, an interrupted one continues from its last checkpoint;
        # nothing is trained over from scratch. Rank 0 decides for every rank.
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        decision = None
        busy = take_folder(run_dir, dist, held)
        if busy:
            decision = ("refuse", busy)
        elif dist.is_main:
            try:
                decision = folder_decision(run_dir, conf, check=not multirun)
            except Exception as err:   # every rank must hear of it (a damaged last.pt, ...)
                decision = ("refuse", f"{run_dir} holds a run that cannot be read: {err}")
        what, detail = dist.broadcast(decision)
        if what == "refuse":
            restore_hydra_files()   # the folder's record stays that of its run
            raise ValueError(detail)
        if what == "done":
            restore_hydra_files()
            log.info("%s already finished (%s); nothing to do (another %s trains anew)",
                     run_dir, detail[1], "hydra.sweep.dir" if multirun else "hydra.run.dir")
            return float(detail[0])
        if what == "resume":
            log.info("%s was interrupted: resuming from its last checkpoint", run_dir)
            conf.resume = str(run_dir)
            extend = False
    log.info("run folder: %s%s", run_dir, f" ({dist.world_size} processes)" if dist.enabled
             else "")
    log.debug("config: %s", asdict(conf))
    summary = run(conf, run_dir, dist, extend)
    hydra_cfg = HydraConfig.get()
    if summary.get("stopped") or summary["progress"]["finished"] == "interrupted":
        # Not done: a non-zero status, so that `nmt-train ... && next-step` stops and a job
        # system restarts the job (exit status STOPPED).
        if hydra_cfg.mode == RunMode.RUN:
            if summary["progress"]["finished"] == "interrupted":
                log.info("stopped; `nmt-train resume=%s` continues", run_dir)
            else:   # training ended; resume= would extend it
                log.info("stopped before the test sets; the same command decodes them")
            sys.exit(STOPPED)
        if hydra_cfg.launcher._target_.endswith("BasicLauncher"):
            # Ctrl-C or SIGTERM stops the whole sweep, not only this run.
            log.info("sweep stopped; the same command resumes it")
            sys.exit(STOPPED)
        # Other launchers: a joblib worker runs job after job, so it must start no more of
        # them, and this one must count as not done (the sweep then ends with an error).
        signals.STOPPED_RUNS.append(str(run_dir))
        raise JobFailed(f"{run_dir}: stopped, last.pt saved; the same command resumes the sweep")
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
