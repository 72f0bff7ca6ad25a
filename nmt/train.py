"""The training loop: training with periodic validation, checkpoints, resume (the data comes
from nmt.data.prepare).

No command-line code here: `nmt.cli.train` builds a TrainConfig and calls `run`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from nmt import checkpoint
from nmt.alignment_file import write_alignments
from nmt.average import step_checkpoints
from nmt.board import Board
from nmt.checks import check_config
from nmt.config import TrainConfig
from nmt.data.dataset import make_batch, token_batches
from nmt.data.prepare import Data, prepare_data
from nmt.device import setup_device
from nmt.distributed import Dist, rng_state, set_rng_state
from nmt.evaluate import score, validation_loss
from nmt.metrics_log import metrics_row
from nmt.model.seq2seq import build_model
from nmt.plots import heatmap
from nmt.precision import autocast, check_precision
from nmt.signals import StopSignals
from nmt.translate import SearchOptions, translate

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Everything besides weights and optimizer that a resumed run needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0       # batches of `epoch` already trained on
    best_bleu: float = -1.0       # the best validation, any step (best.pt)
    best_step: int = 0
    # Patience and the learning-rate schedule count only validations on the valid_every grid,
    # so that a run that stopped between two (a time, step or epoch cap) and is then extended
    # goes on as the run never stopped would have.
    grid_best_bleu: float = -1.0
    bad_validations: int = 0
    bad_steps: int = 0            # consecutive non-finite losses
    skipped_steps: int = 0        # all non-finite losses
    elapsed: float = 0.0          # training seconds before this process
    finished: str = ""            # why training ended ("" while running)
    # Since the last validation (so that a run resumed from a timer or signal checkpoint
    # reports the same training loss and speed): loss sum, its target tokens, all target
    # tokens, training seconds.
    window_loss: float = 0.0
    window_tokens: int = 0
    window_all_tokens: int = 0
    window_seconds: float = 0.0


def check_model(cfg: TrainConfig) -> None:
    """Build the configured model without memory (meta device, a stand-in vocabulary), so that
    its option errors (names, sizes that must match or divide) come before data preparation."""
    a = cfg.attention
    if a.name.startswith("monotonic") and a.mode == "hard":
        raise ValueError("attention.mode=hard: the hard process has no gradient, so the "
                         "attention would not learn; train with log_matrix, parallel or "
                         "recursive (decoding always uses the hard process)")
    with torch.device("meta"):
        build_model(asdict(cfg.model), asdict(a), 64, asdict(cfg.decoder))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """One group, or with weight decay two: parameters marked `no_weight_decay` (a normalised
    direction, whose length the function ignores) are not decayed."""
    params = list(model.parameters())
    kept = [p for p in params if getattr(p, "no_weight_decay", False)]
    if not weight_decay or not kept:
        return [{"params": params}]
    return [{"params": [p for p in params if not getattr(p, "no_weight_decay", False)]},
            {"params": kept, "weight_decay": 0.0}]


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, data: Data | None = None,
                 dist: Dist | None = None):
        check_config(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist or Dist()
        self.device = self.dist.local_device(setup_device(cfg.device, cfg.threads))
        check_precision(cfg.precision, self.device)
        check_model(cfg)   # a mistyped mechanism option fails now, not after the data is ready
        self.board = Board(self.run_dir / "tensorboard" if cfg.train.tensorboard
                           and self.dist.is_main else None)
        self.data = data or self.dist.main_first(lambda: prepare_data(cfg.data,
                                                                      cfg.threads or -1))
        torch.manual_seed(cfg.seed)
        self.model = build_model(asdict(cfg.model), asdict(cfg.attention),
                                 len(self.data.tokenizer), asdict(cfg.decoder)).to(self.device)
        self.step_model = self.dist.wrap(self.model)
        if self.dist.rank:  # the same weights (seeded above), but dropout masks of its own
            torch.manual_seed(cfg.seed + 100_003 * self.dist.rank)
        o = cfg.optim
        # One fused kernel over all parameters: the per-parameter loop took about a tenth of a
        # CPU training step. Same update; rounding differs in the last bit.
        fused = self.device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(param_groups(self.model, o.weight_decay), lr=o.lr,
                                    betas=tuple(o.betas), weight_decay=o.weight_decay,
                                    fused=fused or None)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="max", factor=o.lr_factor, patience=o.lr_patience, min_lr=o.min_lr)
        self.progress = Progress()
        self.signals = StopSignals()
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("model: %s attention, %s decoder, %.2fM parameters, device %s%s",
                 cfg.attention.name, cfg.decoder.name, n_params / 1e6, self.device,
                 "" if cfg.precision == "fp32" else f", {cfg.precision} mixed precision")

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint_dict(self, with_training_state: bool) -> dict:
        ckpt = {
            "model": self.model.state_dict(),
            "config": asdict(self.cfg),
            "tokenizer": torch.frombuffer(bytearray(self.data.tokenizer.proto), dtype=torch.uint8),
            "progress": asdict(self.progress),
        }
        if with_training_state:
            ckpt["optimizer"] = self.opt.state_dict()
            ckpt["scheduler"] = self.sched.state_dict()
            ckpt["rng"] = torch.get_rng_state()
            if torch.cuda.is_available():
                ckpt["cuda_rng"] = torch.cuda.get_rng_state_all()
            if self.dist.enabled:
                ckpt["rng_ranks"] = self.dist.gather(rng_state(self.device))
        return ckpt

    def save(self, best: bool, validated: bool = False) -> None:
        """Called by every rank (the RNG states are gathered); rank 0 writes. After a validation
        (`validated`) with train.keep_last = N, the weights also go to step<k>.pt, N kept."""
        last = self.checkpoint_dict(True)
        if not self.dist.is_main:
            return
        ckpt_dir = self.run_dir / "checkpoints"
        # last.pt last: killed before it, the run resumes from the previous one and redoes
        # this validation, so best.pt never lags behind the progress that last.pt records.
        weights = None
        if best or (validated and self.cfg.train.keep_last):
            weights = self.checkpoint_dict(False)
        if best:
            checkpoint.save(weights, ckpt_dir / "best.pt")
        if validated and self.cfg.train.keep_last:
            checkpoint.save(weights, ckpt_dir / f"step{self.progress.step}.pt")
        checkpoint.save(last, ckpt_dir / "last.pt")
        if validated and self.cfg.train.keep_last:
            for old in step_checkpoints(self.run_dir)[:-self.cfg.train.keep_last]:
                old.unlink()

    def resume(self, path: Path) -> None:
        # Onto the CPU: load_state_dict puts weights and Adam's moments where the parameters
        # are, without the whole file passing through GPU memory first.
        ckpt = checkpoint.load_resumable(path)
        if bytes(ckpt["tokenizer"].tolist()) != self.data.tokenizer.proto:
            raise checkpoint.CheckpointError(
                f"{path} was trained with another vocabulary than the one built from the "
                "current training data (the data files or their SentencePiece settings changed)")
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise checkpoint.CheckpointError(f"{path}: weights do not match the model of the "
                                             f"config ({checkpoint.weight_mismatch(err)})") from err
        # Fused or not is this machine's choice, not the saving one's (set before loading, so
        # the step counts go where the fused kernel wants them).
        saved = dict(ckpt["optimizer"])
        saved["param_groups"] = [{**g, "fused": now["fused"]} for g, now in
                                 zip(saved["param_groups"], self.opt.param_groups, strict=True)]
        self.opt.load_state_dict(saved)
        self.sched.load_state_dict(ckpt["scheduler"])
        self.progress = Progress(**ckpt["progress"])
        if "grid_best_bleu" not in ckpt["progress"]:   # saved before the field existed
            self.progress.grid_best_bleu = self.progress.best_bleu
        # RNG states must be CPU byte tensors, whatever device the checkpoint was mapped to.
        torch.set_rng_state(ckpt["rng"].cpu())
        if "cuda_rng" in ckpt and torch.cuda.is_available():
            # saved by a process that saw more GPUs than this one: the first ones
            states = ckpt["cuda_rng"][:torch.cuda.device_count()]
            torch.cuda.set_rng_state_all([s.cpu() for s in states])
        if len(ckpt.get("rng_ranks", [])) == self.dist.world_size > 1:
            set_rng_state(ckpt["rng_ranks"][self.dist.rank], self.device)
        elif self.dist.rank:  # another number of ranks: a fresh stream for this one
            torch.manual_seed(self.cfg.seed + 100_003 * self.dist.rank + self.progress.step)
        # Validations after the checkpoint (a kill between the metrics line and the save) are
        # redone, so drop their lines.
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file() and self.dist.is_main:
            rows = [x for x in metrics.read_text(errors="replace").splitlines()
                    if (row := metrics_row(x)) and row["step"] <= self.progress.step]
            metrics.write_text("".join(x + "\n" for x in rows))
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.progress.step,
                 self.progress.epoch, self.progress.batch_in_epoch)

    # ---- validation --------------------------------------------------------------------
    def validate(self, train_loss: float, train_tokens: int, seconds: float) -> dict:
        """`seconds`: training time since the last validation (already in progress.elapsed)."""
        cfg, p = self.cfg, self.progress
        start = time.time()
        val_loss = validation_loss(self.model, self.data.valid_enc, cfg.train.batch_tokens,
                                   self.device, cfg.precision)
        opts = SearchOptions(beam_size=cfg.train.valid_beam)
        hyps = translate(self.model, self.data.tokenizer, self.data.valid.src, opts, self.device,
                         precision=cfg.precision)
        scores = score([h.text for h in hyps], self.data.valid.tgt)
        self.write_heatmaps()
        improved = scores.bleu > p.best_bleu
        if improved:
            p.best_bleu, p.best_step = scores.bleu, p.step
        if p.step % cfg.train.valid_every == 0:
            if scores.bleu > p.grid_best_bleu:
                p.grid_best_bleu, p.bad_validations = scores.bleu, 0
            else:
                p.bad_validations += 1
            self.sched.step(scores.bleu)
        row = {
            "step": p.step, "epoch": p.epoch, "train_loss": train_loss,
            "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)),
            "bleu": scores.bleu, "chrf": scores.chrf, "lr": self.opt.param_groups[0]["lr"],
            "elapsed": p.elapsed, "tokens_per_s": train_tokens / max(seconds, 1e-9),
            "valid_seconds": time.time() - start,
        }
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())   # last.pt, saved next, counts this row as written
        log.info("step %d: val loss %.3f ppl %.2f BLEU %.2f chrF %.2f%s", p.step, val_loss,
                 row["val_ppl"], scores.bleu, scores.chrf, " (best)" if improved else "")
        self.board.valid(p.step, row)
        (self.run_dir / "valid").mkdir(exist_ok=True)
        (self.run_dir / "valid" / f"step{p.step}.hyp").write_text(
            "".join(h.text + "\n" for h in hyps), encoding="utf-8")
        if p.bad_validations >= cfg.train.patience:
            p.finished = "early_stopping"
        row["improved"] = improved
        return row

    def shared_validation(self, train_loss: float, train_tokens: int, seconds: float) -> dict:
        """Rank 0 validates; every rank takes its outcome (best BLEU, early stopping, learning
        rate), so that all go on in step."""
        row = self.validate(train_loss, train_tokens, seconds) if self.dist.is_main else {}
        if self.dist.enabled:
            row, progress, sched, lrs = self.dist.broadcast(
                (row, asdict(self.progress), self.sched.state_dict(),
                 [g["lr"] for g in self.opt.param_groups]))
            for key, value in progress.items():
                setattr(self.progress, key, value)
            self.sched.load_state_dict(sched)
            for group, lr in zip(self.opt.param_groups, lrs, strict=True):
                group["lr"] = lr
        return row

    def write_heatmaps(self) -> None:
        n = self.cfg.train.heatmap_sentences
        if n <= 0:
            return
        out_dir = self.run_dir / "heatmaps" / f"step{self.progress.step}"
        hyps = translate(self.model, self.data.tokenizer, self.data.valid.src[:n],
                         SearchOptions(beam_size=1), self.device, alignments=True,
                         precision=self.cfg.precision)
        for i, h in enumerate(hyps):
            if h.alignment is not None:
                heatmap(h.alignment, h.src_pieces, h.tgt_pieces, out_dir / f"{i}.png",
                        title=f"{self.cfg.attention.name} ({self.cfg.decoder.name} decoder), "
                              f"step {self.progress.step}, validation sentence {i + 1}")
                self.board.image(f"alignment/{i + 1}", out_dir / f"{i}.png", self.progress.step)

    # ---- training ----------------------------------------------------------------------
    def train_step(self, idx) -> tuple[float, int]:
        """One update; returns (summed label-smoothed loss, target tokens), loss NaN if skipped.
        Distributed, `idx` is this rank's share and both numbers are of the global batch."""
        b = make_batch(self.data.train, idx).to(self.device)
        self.model.train()
        with autocast(self.cfg.precision, self.device):   # the backward pass follows its casts
            loss, _ = self.step_model(b.src, b.src_len, b.tgt_in, b.tgt_out,
                                      self.cfg.train.label_smoothing)
        total, n_tokens = self.dist.sum_step(loss, b.n_tokens)
        if not math.isfinite(total):  # on any rank: all skip
            self.opt.zero_grad(set_to_none=True)
            return float("nan"), n_tokens
        # DDP averages the ranks' gradients; dividing by the global tokens / world size makes
        # that average the gradient of global loss / global tokens, as for the union batch.
        (loss / (n_tokens / self.dist.world_size)).backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_norm)
        if not math.isfinite(norm):   # a finite loss with an inf gradient: clipping makes it
            self.opt.zero_grad(set_to_none=True)   # NaN, which Adam would write into weights
            return float("nan"), n_tokens
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return total, n_tokens

    def budget_reached(self, seconds: float) -> str:
        t, p = self.cfg.train, self.progress
        if t.max_steps and p.step >= t.max_steps:
            return "max_steps"
        if t.max_minutes and (p.elapsed + seconds) >= 60 * t.max_minutes:
            return "max_minutes"
        return ""

    def fit(self) -> Progress:
        cfg, p = self.cfg, self.progress
        world, rank = self.dist.world_size, self.dist.rank
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        start = saved = time.time()   # `start`: training time since then is not in p.elapsed
        with self.signals:
            # Resumed: a budget may already be spent (a finished run resumed without a new
            # one), and a stop may have come after a step that was due for validation and
            # before it: validate that step now, as the run left alone did.
            spent = "" if p.finished else self.dist.agree(self.budget_reached(0.0))
            if not p.finished and p.step and p.window_all_tokens and (
                    spent or p.step % cfg.train.valid_every == 0):
                self.validate_and_save(0.0, spent)
                start = saved = time.time()
            elif spent:
                p.finished = spent
            while not p.finished and p.epoch < cfg.train.max_epochs:
                batches = token_batches(self.data.train, cfg.train.batch_tokens, cfg.seed, p.epoch)
                bar = tqdm(total=len(batches), initial=p.batch_in_epoch, desc=f"epoch {p.epoch}",
                           unit="batch", disable=None if self.dist.is_main else True, leave=False)
                # A step takes the next `world` batches, one per rank; a remainder smaller than
                # that is left out of this epoch (the next epoch draws a new order).
                while p.batch_in_epoch + world <= len(batches) and not p.finished:
                    loss, ntok = self.train_step(batches[p.batch_in_epoch + rank])
                    p.batch_in_epoch += world
                    p.step += 1
                    p.window_all_tokens += ntok
                    if math.isnan(loss):
                        p.bad_steps += 1
                        p.skipped_steps += 1
                        log.warning("step %d: non-finite loss or gradient, update skipped",
                                    p.step)
                        if p.bad_steps >= cfg.train.max_bad_steps:
                            p.finished = "non_finite_loss"
                            log.error("stopping at step %d: %d non-finite losses in a row; the "
                                      "last good checkpoint is kept", p.step, p.bad_steps)
                            break
                    else:
                        p.bad_steps = 0
                        p.window_loss += loss
                        p.window_tokens += ntok
                    fresh = time.time() - start
                    speed = p.window_all_tokens / max(p.window_seconds + fresh, 1e-9)
                    bar.update(world)
                    bar.set_postfix(loss=f"{p.window_loss / max(p.window_tokens, 1):.3f}",
                                    tok_s=f"{speed:.0f}")
                    if cfg.train.log_every and p.step % cfg.train.log_every == 0:
                        log.info("step %d epoch %d: loss %.3f, %.0f target tokens/s", p.step,
                                 p.epoch, p.window_loss / max(p.window_tokens, 1), speed)
                        self.board.train(p.step, p.window_loss / max(p.window_tokens, 1), speed)
                    due = cfg.train.save_every_minutes and \
                        time.time() - saved >= 60 * cfg.train.save_every_minutes
                    reason = self.dist.agree(self.budget_reached(fresh) or (
                        "interrupted" if self.signals.requested else "") or (
                        "checkpoint" if due else ""))
                    validating = p.step % cfg.train.valid_every == 0 or reason not in (
                        "", "checkpoint")
                    if reason == "interrupted" or (reason == "checkpoint" and not validating):
                        self.bank_time(time.time() - start)
                        start = saved = time.time()
                        if reason == "interrupted":
                            p.finished = reason
                        self.save(best=False)
                        log.info("%s: saved %s", "interrupted" if p.finished else "timer",
                                 self.run_dir / "checkpoints" / "last.pt")
                        continue
                    if validating:
                        self.validate_and_save(time.time() - start, reason.replace(
                            "checkpoint", ""))
                        start = saved = time.time()
                bar.close()
                if p.batch_in_epoch + world > len(batches) and not p.finished:
                    p.epoch += 1
                    p.batch_in_epoch = 0
            if not p.finished and p.window_all_tokens:
                self.validate_and_save(time.time() - start, "max_epochs")
            elif not p.finished:   # the last step was validated already: no second row
                self.bank_time(time.time() - start)
                p.finished = "max_epochs"
            if p.finished != "interrupted":
                self.save(best=False)
            if self.signals.requested:   # also when the budget ended training at that step
                self.signals.hand_over()
        self.board.close()
        log.info("training finished (%s) after %d steps, %.1f min; best BLEU %.2f at step %d",
                 p.finished, p.step, p.elapsed / 60, p.best_bleu, p.best_step)
        return p

    def bank_time(self, seconds: float) -> None:
        """Training seconds go into the progress, so that a checkpoint holds them."""
        self.progress.elapsed += seconds
        self.progress.window_seconds += seconds

    def validate_and_save(self, seconds: float, reason: str) -> None:
        """Validate on the window since the last validation, then save (best.pt if better)."""
        p = self.progress
        self.bank_time(seconds)
        row = self.shared_validation(p.window_loss / max(p.window_tokens, 1),
                                     p.window_all_tokens, p.window_seconds)
        if reason and not p.finished:
            p.finished = reason
        p.window_loss, p.window_tokens, p.window_all_tokens, p.window_seconds = 0.0, 0, 0, 0.0
        self.save(best=row["improved"], validated=True)

    def evaluate_tests(self) -> dict:
        """Decode data.test with best.pt; write hypotheses and scores into the run folder."""
        cfg = self.cfg
        if not cfg.train.test_beam or not self.data.tests:
            return {}
        best = self.run_dir / "checkpoints" / "best.pt"
        if best.is_file():
            self.model.load_state_dict(checkpoint.load(best, self.device)["model"])
        opts = SearchOptions(beam_size=cfg.train.test_beam, alpha=cfg.train.test_alpha,
                             max_src_len=cfg.data.max_len)   # the cut nmt-translate makes
        results = {}
        out_dir = self.run_dir / "test"
        out_dir.mkdir(exist_ok=True)
        for k, (name, split) in enumerate(self.data.tests.items()):
            # The first set's first sentences also keep their alignments (test/alignments.json),
            # so that nmt-compare can show them for a run kept without its weights.
            # One decoding of the whole set, batched as without alignments (same outputs).
            head = cfg.train.test_alignments if k == 0 else 0
            start = time.time()
            hyps = translate(self.model, self.data.tokenizer, split.src, opts, self.device,
                             alignments=head > 0, precision=cfg.precision)
            seconds = time.time() - start
            if head:
                write_alignments(out_dir / "alignments.json", hyps[:head], name,
                                 opts.beam_size, opts.alpha)
            elif k == 0:   # none of an earlier decoding's, which no longer match
                (out_dir / "alignments.json").unlink(missing_ok=True)
            (out_dir / f"{name}.{cfg.data.tgt_lang}").write_text(
                "".join(h.text + "\n" for h in hyps), encoding="utf-8")
            s = score([h.text for h in hyps], split.tgt)
            results[name] = {"bleu": s.bleu, "chrf": s.chrf, "bleu_signature": s.bleu_signature,
                             "beam": opts.beam_size, "alpha": opts.alpha,
                             "precision": cfg.precision,
                             "sentences_per_s": len(hyps) / max(seconds, 1e-9)}
            log.info("%s (beam %d): BLEU %.2f chrF %.2f", name, opts.beam_size, s.bleu, s.chrf)
        (self.run_dir / "test" / "scores.json").write_text(json.dumps(results, indent=1))
        return results


def run(cfg: TrainConfig, run_dir: str | Path, dist: Dist | None = None,
        extend: bool = True) -> dict:
    """Train (or resume) in `run_dir`, then decode the test sets with the best checkpoint.
    `dist`: this process's place in a distributed job (default: a single process).
    `extend`: a resumed run that had finished trains on (under its new budget); if False,
    it only completes what followed its training (the test sets and summary.json)."""
    trainer = Trainer(cfg, run_dir, dist=dist)
    last = Path(run_dir) / "checkpoints" / "last.pt"
    ended = False
    if cfg.resume:
        if not last.is_file():
            raise checkpoint.CheckpointError(f"{last}: nothing to resume from")
        trainer.resume(last)
        if trainer.progress.finished == "interrupted":
            trainer.progress.finished = ""   # stopped by a signal: it trains on
        ended = trainer.progress.finished != ""
        if ended:
            log.info("the run had finished (%s)%s", trainer.progress.finished,
                     "; it trains on under the new budget" if extend else "")
        if extend:
            ended, trainer.progress.finished = False, ""
            # under way again: the earlier end's summary no longer describes the run
            if trainer.dist.is_main:
                (Path(run_dir) / "summary.json").unlink(missing_ok=True)
    progress = trainer.progress if ended else trainer.fit()
    if trainer.signals.requested and trainer.dist.is_main:
        # Stopped by a signal, even on the step that ended training: no test decoding now
        # (a job system's grace period is short); the same command completes the run.
        return {"progress": asdict(progress), "test": {}, "stopped": True}
    if progress.finished == "interrupted" or not trainer.dist.is_main:
        return {"progress": asdict(progress), "test": {}}
    summary = {"progress": asdict(progress), "test": trainer.evaluate_tests(),
               "parameters": sum(p.numel() for p in trainer.model.parameters())}
    # Written whole or not at all: a summary.json is what marks a run as done.
    tmp = Path(run_dir) / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, Path(run_dir) / "summary.json")
    return summary
