"""bf16 mixed precision (nmt.precision): the products run in bfloat16, while weights, gradients,
recurrent and attention states and the loss stay float32, and the model computes what it
computes in float32 up to bfloat16 rounding, for every mechanism in both decoders."""

import pytest
import torch
import torch.nn.functional as F

from nmt import evaluate, train, translate
from nmt.attention import REGISTRY, build_attention
from nmt.attention.base import Memory
from nmt.attention.monotonic import mono_log_matrix
from nmt.checks import check_config
from nmt.cli.train import same_settings
from nmt.config import TrainConfig, TranslateConfig
from nmt.model.decoder import gru_cell
from nmt.model.encoder import Encoder
from nmt.model.seq2seq import build_model
from nmt.precision import autocast, check_precision, full_precision
from tests.test_every_mechanism import ATTENTION_YAMLS, config
from tests.test_every_mechanism import corpus as corpus  # noqa: F401 (fixture)
from tests.test_translate_cli import ckpt as ckpt  # noqa: F401 (fixture)
from tests.test_translate_cli import cli

V = 40
CPU = torch.device("cpu")


def small_model(attention: str, decoder: str, layers: int = 1):
    torch.manual_seed(0)
    options = {"name": attention, "units": 16}
    return build_model({"emb_size": 16, "hidden_size": 32, "dropout": 0.0, "dec_layers": layers},
                       options, V, {"name": decoder})


def batch():
    g = torch.Generator().manual_seed(3)
    lengths = [9, 7, 4, 2]
    src = torch.randint(4, V, (4, 9), generator=g)
    for i, n in enumerate(lengths):
        src[i, n:] = 0
    tgt = torch.randint(4, V, (4, 8), generator=g)
    tgt[3, 5:] = 0
    return src, torch.tensor(lengths), tgt[:, :-1], tgt[:, 1:]


def loss_and_grad(model, precision: str) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    src, src_len, tgt_in, tgt_out = batch()
    torch.manual_seed(5)   # the same noise (monotonic attention's) in both precisions
    with autocast(precision, CPU):
        loss, _ = model.loss(src, src_len, tgt_in, tgt_out, 0.1)
    loss.backward()
    return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()
                                   if p.grad is not None])


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("attention", sorted(REGISTRY))
def test_bf16_computes_the_fp32_loss_and_gradient_up_to_rounding(attention, decoder):
    model = small_model(attention, decoder)
    loss32, grad32 = loss_and_grad(model, "fp32")
    loss16, grad16 = loss_and_grad(model, "bf16")
    assert loss16 != loss32                          # bfloat16 did round something
    assert abs(loss16 - loss32) <= 1e-2 * abs(loss32)
    assert torch.isfinite(grad16).all()
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine > 0.99
    assert abs(grad16.norm() / grad32.norm() - 1) < 0.05
    # The master weights and their gradients stay float32 (Adam updates those).
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("attention", sorted(REGISTRY))
def test_bf16_keeps_states_in_fp32_and_runs_the_output_layer_in_bf16(attention, decoder):
    model = small_model(attention, decoder, layers=2).eval()
    src, src_len, tgt_in, _ = batch()
    with torch.no_grad(), autocast("bf16", CPU):
        mem, state = model.encode(src, src_len)
        for t in range(3):
            logits, norm, alpha, state = model.step_logits(tgt_in[:, t], state, mem)
            assert state.hidden.dtype == torch.float32          # both GRU layers
            assert state.attn is None or state.attn.dtype == torch.float32
            assert alpha.dtype == torch.float32 and norm.dtype == torch.float32
        assert model.output(torch.zeros(1, model.decoder.out_size)).dtype == torch.bfloat16
    assert mem.values.dtype == torch.float32   # the encoder's GRU ran in float32


def test_an_unknown_precision_is_named_with_its_key():
    with pytest.raises(ValueError, match=r"^precision='fp16': must be one of fp32, bf16"):
        check_precision("fp16")
    cfg = TrainConfig()
    cfg.precision = "bf32"
    with pytest.raises(ValueError, match=r"^precision=bf32: must be one of fp32, bf16"):
        check_config(cfg)
    tcfg = TranslateConfig(checkpoint="x.pt", precision="half")
    with pytest.raises(ValueError, match="precision=half"):
        check_config(tcfg)
    with pytest.raises(ValueError, match="precision=bf16: mixed precision runs on cpu or cuda"):
        check_precision("bf16", torch.device("meta"))


def test_a_bf16_run_trains_validates_decodes_and_resumes(corpus, tmp_path, monkeypatch):  # noqa: F811
    entered = set()
    for module in (train, evaluate, translate):   # where training, validation, decoding run
        def spy(precision, device, module=module, real=autocast):
            entered.add((module.__name__, precision))
            return real(precision, device)
        monkeypatch.setattr(module, "autocast", spy)
    yaml = next(y for y in ATTENTION_YAMLS if y.stem == "bahdanau")
    cfg = config(corpus, yaml, "luong")
    cfg.precision = "bf16"
    summary = run_and_check(cfg, tmp_path)
    assert entered == {("nmt.train", "bf16"), ("nmt.evaluate", "bf16"),
                       ("nmt.translate", "bf16")}
    assert summary["test"]["test_2016_flickr"]["precision"] == "bf16"
    cfg.resume, cfg.train.max_steps = str(tmp_path), 3
    assert run_and_check(cfg, tmp_path)["progress"]["step"] == 3


def run_and_check(cfg, folder):
    from nmt.train import run
    summary = run(cfg, folder)
    assert summary["progress"]["finished"] == "max_steps"
    assert summary["progress"]["skipped_steps"] == 0
    hyps = (folder / "test" / "test_2016_flickr.de").read_text().splitlines()
    assert len(hyps) == 12
    return summary


def test_nmt_translate_in_bf16_gives_every_line(ckpt, tmp_path):  # noqa: F811
    src = tmp_path / "in.en"
    src.write_text("a dog runs\n\ntwo men\n")
    res = cli(ckpt, tmp_path, f"input={src}", "precision=bf16", "search.max_out_len=8",
              "device=cpu")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 3
    res = cli(ckpt, tmp_path, f"input={src}", "precision=fp16", "device=cpu")
    assert res.returncode != 0
    assert "precision=fp16" in res.stderr and "Traceback" not in res.stderr


def test_the_api_takes_a_precision(ckpt):  # noqa: F811
    import nmt
    t32 = nmt.load(ckpt, precision="fp32")
    t16 = nmt.load(ckpt, precision="bf16")
    a = t32.translate(["a dog runs"], beam_size=2, max_out_len=6)[0]
    b = t16.translate(["a dog runs"], beam_size=2, max_out_len=6)[0]
    assert b.score != a.score                               # bf16 did apply
    assert b.score == pytest.approx(a.score, abs=0.1)   # an untrained model: scores only
    with pytest.raises(ValueError, match="precision='int8'"):
        nmt.load(ckpt, precision="int8")


def test_the_recurrences_are_float32_inside_bf16():
    """The GRU gates from bfloat16 products are computed in float32; the encoder's GRU and the
    monotonic and local-p states are computed with autocast off (bit-identical to fp32)."""
    torch.manual_seed(0)
    gi = torch.randn(4, 48).bfloat16()
    h, w, b = torch.randn(4, 16), torch.randn(48, 16), torch.randn(48)
    with autocast("bf16", CPU):
        got = gru_cell(gi, h, w, b)
    gh = F.linear(h.bfloat16(), w.bfloat16(), b.bfloat16()).float()
    (i_r, i_z, i_n), (h_r, h_z, h_n) = gi.float().chunk(3, 1), gh.chunk(3, 1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, n + z * (h - n), rtol=0, atol=1e-6)

    enc = Encoder(V, 8, 16, 1, True, 0.0)
    seen = []
    enc.rnn.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    with autocast("bf16", CPU):
        enc(torch.randint(4, V, (2, 5)), torch.tensor([5, 3]))
    assert seen == [False]

    e, prev = torch.randn(3, 7), torch.softmax(torch.randn(3, 7), -1)
    with autocast("bf16", CPU):
        mixed = mono_log_matrix(e, prev)
    assert torch.equal(mixed, mono_log_matrix(e, prev))

    local_p = build_attention("local_p", 16, 16)
    mem = Memory(torch.randn(2, 9, 16), torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool))
    q = torch.randn(2, 16)
    with torch.no_grad(), autocast("bf16", CPU):
        mixed = local_p.centre(q, mem, None)
    with torch.no_grad():
        assert torch.equal(mixed, local_p.centre(q, mem, None))


def test_full_precision_turns_autocast_off_and_costs_nothing_in_fp32(monkeypatch):
    """Inside bf16 it switches autocast off and back on; in fp32 (where it runs per decoding
    step) it enters no autocast context at all."""
    with autocast("bf16", CPU):
        with full_precision(CPU):
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    entered = []
    real = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: entered.append(k) or real(*a, **k))
    with full_precision(CPU):
        assert not torch.is_autocast_enabled("cpu")
    assert entered == []


def test_a_record_from_before_a_new_key_is_the_same_run():
    """A run folder written before `precision` existed (its config.yaml without the key) is the
    same run to a command that writes the key with its default; another value is not."""
    earlier = b"seed: 1\nattention:\n  name: bahdanau\n"
    assert same_settings(earlier, earlier.replace(b"seed: 1", b"seed: 1\nprecision: fp32"))
    assert not same_settings(earlier, earlier.replace(b"seed: 1", b"seed: 1\nprecision: bf16"))
    assert not same_settings(earlier, earlier.replace(b"bahdanau", b"location"))
