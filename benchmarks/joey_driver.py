"""Runs Joey NMT 2.3.0's own training loop and search inside Joey's virtual environment, for
benchmarks/speed.py. It is not part of the package and imports nothing from it.

    python joey_driver.py train CONFIG --warmup 10 --steps 60 [--bucket]
    python joey_driver.py decode CONFIG --weights ported.pt --beam 5

Each prints one JSON line (prefixed by RESULT) with its figures and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import torch
from joeynmt.config import load_config, parse_global_args
from joeynmt.data import load_data
from joeynmt.helpers import make_model_dir
from joeynmt.helpers_for_ddp import get_logger
from joeynmt.model import build_model
from joeynmt.prediction import predict
from joeynmt.training import TrainManager
from joeynmt.training import train as joey_train


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bucket_batches() -> None:
    """Joey's TokenBatchSampler, but cutting its batches from length-sorted pools as ours does
    (sentences of one pool of about 100 batches sorted by target then source length, the
    batches then shuffled); Joey's own packing rule is kept. For a like-for-like speed figure:
    Joey 2.3 itself does not bucket."""
    from joeynmt.datasets import TokenBatchSampler

    def batches(self):
        d = self.sampler.data_source
        items = []
        for idx in self.sampler:   # Joey's random order
            _, src, trg = d[idx]
            if src is not None:
                t = 0 if trg is None else len(trg)
                items.append((idx, 0 if not src else max(len(src) + 1, t + 1), t, len(src)))
        mean = max(1, sum(t for _, _, t, _ in items) // max(1, len(items)))
        pool = max(1, 100 * self.batch_size // mean)
        out = []
        for start in range(0, len(items), pool):
            batch, longest = [], 0
            for idx, n, _, _ in sorted(items[start:start + pool], key=lambda x: (x[2], x[3])):
                batch.append(idx)
                longest = max(longest, n)
                if longest * len(batch) >= self.batch_size:
                    out.append(batch)
                    batch, longest = [], 0
            if batch:
                out.append(batch)
        random.Random(len(items)).shuffle(out)
        yield from out

    TokenBatchSampler.__iter__ = batches


def train(cfg_path: Path, warmup: int, steps: int, bucket: bool = False) -> dict:
    """Joey's own entry point (joeynmt.training.train), its log hook recording each interval;
    with `bucket`, its batches cut from length-sorted pools (bucket_batches)."""
    if bucket:
        bucket_batches()
    cfg = load_config(cfg_path)
    cfg["training"]["updates"] = warmup + steps
    cfg["training"]["logging_freq"] = 1
    cfg["training"]["validation_freq"] = 10**9
    intervals: list[tuple[int, float, int]] = []
    params: list[int] = []
    original = TrainManager._log_scores

    def record(self, epoch_no, elapsed_time, start_tokens, start_correct, total_batch_loss):
        intervals.append((self.stats.steps, elapsed_time, self.stats.total_tokens - start_tokens))
        params[:] = [sum(p.numel() for p in self.model.parameters())]
        return original(self, epoch_no, elapsed_time, start_tokens, start_correct,
                        total_batch_loss)

    TrainManager._log_scores = record
    make_model_dir(Path(cfg["model_dir"]), overwrite=True)
    get_logger("", log_file=str(Path(cfg["model_dir"]) / "train.log"))
    joey_train(rank=0, world_size=1, cfg=cfg, skip_test=True)
    steady = [(t, n) for step, t, n in intervals if step > warmup]
    seconds = sum(t for t, _ in steady)
    tokens = sum(n for _, n in steady)
    return {"steps": len(steady), "seconds": seconds, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "parameters": params[0],
            "peak_rss_mb": peak_rss_mb()}


def port_weights(ours: dict, model: torch.nn.Module) -> dict:
    """Our checkpoint's weights under Joey's names (same architecture; see speed.py)."""
    w = ours["model"]
    H = w["decoder.w_hh"].shape[1]
    D_m = w["decoder.attention.score.memory_layer.weight"].shape[1]
    combine = w["decoder.combine.weight"]          # ours: W [c; s]; Joey: W [s; c] + bias
    state = {
        "src_embed.lut.weight": w["encoder.embed.weight"],
        "trg_embed.lut.weight": w["decoder.embed.weight"],
        "decoder.attention.key_layer.weight": w["decoder.attention.score.memory_layer.weight"],
        "decoder.attention.query_layer.weight": w["decoder.attention.score.query_layer.weight"],
        "decoder.attention.energy_layer.weight": w["decoder.attention.score.v"].unsqueeze(0),
        "decoder.rnn.weight_ih_l0": w["decoder.w_ih"],
        "decoder.rnn.weight_hh_l0": w["decoder.w_hh"],
        "decoder.rnn.bias_ih_l0": w["decoder.b_ih"],
        "decoder.rnn.bias_hh_l0": w["decoder.b_hh"],
        "decoder.att_vector_layer.weight": torch.cat([combine[:, D_m:], combine[:, :D_m]], 1),
        "decoder.att_vector_layer.bias": torch.zeros(H),
        "decoder.bridge_layer.weight": w["bridge.weight"],
        "decoder.bridge_layer.bias": w["bridge.bias"],
        # Joey's output layer has no bias: ours is dropped (a constant shift of the logits
        # per token); hypotheses may differ slightly, their lengths are reported.
        "decoder.output_layer.weight": w["output.weight"],
    }
    for name, value in w.items():
        if name.startswith("encoder.rnn."):
            state[name] = value
    swap = torch.tensor([1, 0] + list(range(2, w["output.weight"].shape[0])))
    for name in ("src_embed.lut.weight", "trg_embed.lut.weight", "decoder.output_layer.weight"):
        state[name] = state[name][swap]   # our pad=0, unk=1; Joey's unk=0, pad=1
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise KeyError(f"unported Joey parameters: {sorted(missing)}")
    return state


def decode(cfg_path: Path, weights: Path, beam: int, batch_size: int) -> dict:
    cfg = load_config(cfg_path)
    cfg["testing"]["beam_size"] = beam
    cfg["testing"]["batch_size"] = batch_size
    args = parse_global_args(cfg, rank=0, mode="test")
    src_vocab, trg_vocab, _, _, test_data = load_data(cfg["data"], datasets=["test"])
    model = build_model(cfg["model"], src_vocab=src_vocab, trg_vocab=trg_vocab)
    ours = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(port_weights(ours, model))
    model.eval()
    start = time.time()
    _, _, hyps, decoded, _, _ = predict(model=model, data=test_data, device=torch.device("cpu"),
                                        n_gpu=0, compute_loss=False, args=args.test,
                                        autocast={"device_type": "cpu", "enabled": False})
    seconds = time.time() - start
    out_tokens = sum(len(h) for h in decoded)
    return {"sentences": len(hyps), "seconds": seconds, "sentences_per_s": len(hyps) / seconds,
            "output_pieces": out_tokens, "hypotheses": hyps, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["train", "decode"])
    ap.add_argument("config", type=Path)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bucket", action="store_true",
                    help="train: batches from length-sorted pools, as ours (not Joey's own)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.what == "train":
        result = train(a.config, a.warmup, a.steps, a.bucket)
    else:
        result = decode(a.config, a.weights, a.beam, a.batch_size)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
