"""Shared CLI plumbing: schemas in Hydra's ConfigStore, config -> dataclass, user-facing errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue

from nmt.attention import AttentionConfigError
from nmt.checkpoint import CheckpointError
from nmt.checks import check_config
from nmt.config import (
    AverageConfig,
    CompareConfig,
    PreprocessConfig,
    TrainConfig,
    TranslateConfig,
)
from nmt.data.corpus import CorpusError

T = TypeVar("T")
# File-system refusals (a read-only cache folder, a file where a folder should be) name their
# path; a traceback would add nothing.
USER_ERRORS = (CorpusError, CheckpointError, AttentionConfigError, ValueError, FileNotFoundError,
               PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError,
               MissingMandatoryValue)


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="translate_schema", node=TranslateConfig)
    cs.store(name="compare_schema", node=CompareConfig)
    cs.store(name="preprocess_schema", node=PreprocessConfig)
    cs.store(name="average_schema", node=AverageConfig)


def unknown_key(cfg: DictConfig, cls: type) -> str | None:
    """The first key of `cfg` that the schema `cls` lacks. Hydra's `+key=value` adds keys to
    any config, and the dataclass would drop them without a word."""
    try:
        OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.to_container(cfg))
    except ConfigKeyError as err:
        return err.full_key
    return None


def no_such_setting(key: str) -> str:
    return (f"{key}: no such setting (misspelt?); a key given with + must be one of the "
            "config's own")


def to_object(cfg: DictConfig, cls: type[T]) -> T:
    """The config as its dataclass, its values checked (ValueError naming the key)."""
    key = unknown_key(cfg, cls)
    if key is not None:
        raise ValueError(no_such_setting(key))
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, cls), type(obj)
    check_config(obj)
    return obj


class JobFailed(CompactHydraException):
    """A sweep job stopped by bad input (already reported on its own line)."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn known bad-input errors into one clear line on stderr and exit status 2."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            logging.getLogger("nmt").debug("error", exc_info=True)
            if isinstance(err, MissingMandatoryValue):   # omegaconf's message is 4 lines
                err = f"{err.full_key}: required (e.g. {err.full_key}=...)"
            print(f"error: {err}", file=sys.stderr)
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                # Hydra records the failed job, the sweep goes on, and at its end Hydra raises
                # the first failure again: one line, as here, rather than a traceback.
                raise JobFailed(str(err)) from None
            sys.exit(2)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


class RunFolderCheck(Callback):
    """Hydra callback (hydra.callbacks in the command configs): a run or sweep folder that
    cannot be created stops the command with one line on stderr and exit status 2, where Hydra
    would print a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        creatable(config.hydra.run.dir, "hydra.run.dir")
        # Hydra is about to write this command's .hydra/ over an earlier run's there; keep the
        # earlier files so that a refused command can put them back (restore_hydra_files).
        EARLIER_HYDRA_FILES.clear()
        folder = Path(config.hydra.run.dir) / str(config.hydra.output_subdir or ".hydra")
        if config.hydra.output_subdir is not None and folder.is_dir():
            EARLIER_HYDRA_FILES.update({f: f.read_bytes() for f in folder.iterdir()
                                        if f.is_file()})

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        creatable(config.hydra.sweep.dir, "hydra.sweep.dir")


EARLIER_HYDRA_FILES: dict[Path, bytes] = {}   # filled by RunFolderCheck.on_run_start


def restore_hydra_files() -> None:
    """Put back the .hydra/ files of the run that was in the run folder before this command."""
    for path, data in EARLIER_HYDRA_FILES.items():
        path.write_bytes(data)


def creatable(folder: str, key: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create the run folder {folder} ({err.strerror or err}); "
              f"set {key}= to a writable folder", file=sys.stderr)
        sys.exit(2)
