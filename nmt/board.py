"""Optional TensorBoard logging of a training run (train.tensorboard=true): training loss and
speed, validation loss, perplexity, BLEU, chrF, learning rate and the alignment heatmaps, in
<run>/tensorboard (`tensorboard --logdir outputs`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image


class Board:
    """With `folder` None (TensorBoard off, or not the main process) every method does nothing."""

    def __init__(self, folder: Path | None):
        self.writer = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ValueError("train.tensorboard=true needs the tensorboard package: "
                             "pip install 'nmt[tensorboard]'") from err
        self.writer = SummaryWriter(str(folder))

    def train(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self.writer:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/target_tokens_per_s", tokens_per_s, step)

    def valid(self, step: int, row: dict) -> None:
        """One metrics.jsonl row."""
        if self.writer:
            for key in ("train_loss", "val_loss", "val_ppl", "bleu", "chrf", "lr"):
                self.writer.add_scalar(f"valid/{key}", row[key], step)
            self.writer.flush()

    def image(self, tag: str, png: Path, step: int) -> None:
        if self.writer:
            rgb = matplotlib.image.imread(png)[..., :3]
            self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer:
            self.writer.close()
