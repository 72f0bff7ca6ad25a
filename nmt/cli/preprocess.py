"""nmt-preprocess: build the training cache (tokenizer + memory-mapped encoded pairs) once."""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from nmt.cli.common import register_schemas, to_object, user_errors
from nmt.config import PreprocessConfig
from nmt.data.prepare import ensure_corpus, split_paths
from nmt.data.preprocess import prepare_corpus

log = logging.getLogger("nmt")
register_schemas()


@user_errors
def preprocess_main(cfg: DictConfig) -> None:
    conf = to_object(cfg, PreprocessConfig)
    start = time.time()
    ensure_corpus(conf.data, [conf.data.train])   # the cache holds the training pairs only
    corpus = prepare_corpus(conf.data, *split_paths(conf.data, "train"),
                            threads=conf.threads or -1)
    info = corpus.info
    size = sum(f.stat().st_size for f in corpus.folder.iterdir())
    print(f"encoded: {corpus.folder} ({size / 2**20:.1f} MiB), vocabulary "
          f"{len(corpus.tokenizer)}")
    print(f"pairs: {info['kept']} kept of {info['pairs']} ({info['empty']} empty, "
          f"{info['too_long']} over {info['max_len']} pieces); "
          f"{info['src_tokens']} source and {info['tgt_tokens']} target pieces; "
          f"{time.time() - start:.1f} s")


@hydra.main(version_base="1.3", config_path="pkg://nmt.configs", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    preprocess_main(cfg)


if __name__ == "__main__":
    main()
