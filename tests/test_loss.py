"""The fused label-smoothed loss equals PyTorch's cross-entropy, value and gradient."""

import torch
import torch.nn.functional as F

from nmt.model.loss import smoothed_cross_entropy
from nmt.model.seq2seq import ModelSpec, Seq2Seq


def test_matches_cross_entropy_and_gradcheck():
    torch.manual_seed(0)
    z = torch.randn(9, 13, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 13, (9,))
    for eps in (0.0, 0.1, 0.3):
        loss, nll = smoothed_cross_entropy(z, y, eps)
        torch.testing.assert_close(loss, F.cross_entropy(z, y, label_smoothing=eps,
                                                         reduction="none"))
        torch.testing.assert_close(nll, F.cross_entropy(z, y, reduction="none"))
        assert torch.autograd.gradcheck(lambda z, e=eps: smoothed_cross_entropy(z, y, e)[0], (z,))


def test_model_loss_equals_reference_over_real_tokens():
    torch.manual_seed(0)
    model = Seq2Seq(ModelSpec(vocab_size=20, emb_size=8, hidden_size=12, dropout=0.0),
                    "bahdanau").double()
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    src_len = torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 5, 6, 7], [2, 9, 0, 0]])
    tgt_out = torch.tensor([[5, 6, 7, 3], [9, 3, 0, 0]])
    loss, nll = model.loss(src, src_len, tgt_in, tgt_out, 0.1)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    logits, _ = model(src, src_len, tgt_in)
    real = tgt_out != 0
    ref = F.cross_entropy(logits[real], tgt_out[real], label_smoothing=0.1, reduction="sum")
    ref_grads = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, F.cross_entropy(logits[real], tgt_out[real],
                                                    reduction="sum"))
    for g, r in zip(grads, ref_grads, strict=True):
        if r is not None:
            torch.testing.assert_close(g, r)
