"""nmt-average: average the weights of several checkpoints of one run into a new checkpoint."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmt import checkpoint
from nmt.average import average_checkpoints, step_checkpoints
from nmt.cli.common import register_schemas, to_object, user_errors
from nmt.config import AverageConfig

log = logging.getLogger("nmt")
register_schemas()


@user_errors
def average_main(cfg: DictConfig) -> None:
    conf = to_object(cfg, AverageConfig)
    out = Path(conf.output)
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"output={out}: " + ("a folder, not a file" if out.is_dir() else
                                               f"its folder {out.parent} does not exist"))
    if out.parent.name == "checkpoints" and re.fullmatch(r"(last|best|step\d+)\.pt", out.name):
        raise ValueError(f"output={out}: a file of the run's own (training continues from "
                         "last.pt, decodes with best.pt); name it e.g. averaged.pt")
    if not os.access(out.parent, os.W_OK):   # before every checkpoint is loaded
        raise ValueError(f"output={out}: its folder {out.parent} is not writable")
    paths = list(conf.checkpoints)
    if conf.run:
        if paths:
            raise ValueError("give either checkpoints=[...] or run=RUN_DIR, not both")
        if not Path(conf.run).is_dir():
            raise FileNotFoundError(f"run={conf.run}: folder not found")
        paths = [str(p) for p in step_checkpoints(Path(conf.run))[-conf.last:]]
        if 0 < len(paths) < conf.last:
            log.warning("last=%d: %s keeps %d step checkpoints; averaging those", conf.last,
                        conf.run, len(paths))
        if not paths:
            raise FileNotFoundError(f"{conf.run}/checkpoints holds no step<k>.pt checkpoints "
                                    "(train with train.keep_last=N to keep them)")
    if out.exists() and any(out.samefile(p) for p in paths if Path(p).exists()):
        raise ValueError(f"output={out} is one of the checkpoints averaged: it would be lost")
    checkpoint.save(average_checkpoints(paths), conf.output)
    log.info("averaged %d checkpoints into %s: %s", len(paths), conf.output, ", ".join(paths))


@hydra.main(version_base="1.3", config_path="pkg://nmt.configs", config_name="average")
def main(cfg: DictConfig) -> None:
    average_main(cfg)


if __name__ == "__main__":
    main()
