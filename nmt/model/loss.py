"""Label-smoothed cross-entropy with a hand-written gradient.

loss_i = (1 - eps) * nll_i + eps * mean_v(-log p_iv), whose gradient with respect to the logits is
softmax(z_i) - (1 - eps) * onehot(y_i) - eps / V. Autograd through log_softmax, gather and mean
would allocate and fill several [N, V] tensors for the same result; this keeps one.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        lse = torch.logsumexp(logits, dim=-1)                               # [N]
        nll = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1)        # [N]
        loss = (1 - eps) * nll + eps * (lse - logits.mean(dim=-1))
        ctx.save_for_backward(logits, lse, target)
        ctx.eps = eps
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor, None, None]:
        logits, lse, target = ctx.saved_tensors
        eps, V = ctx.eps, logits.shape[-1]
        grad = (logits - lse.unsqueeze(1)).exp_()                           # softmax
        grad.sub_(eps / V)
        grad.scatter_add_(1, target.unsqueeze(1), torch.full_like(lse, eps - 1).unsqueeze(1))
        grad.mul_(grad_loss.unsqueeze(1))
        return grad, None, None


def smoothed_cross_entropy(logits: Tensor, target: Tensor, eps: float = 0.0
                           ) -> tuple[Tensor, Tensor]:
    """logits [N, V], target [N] -> (label-smoothed loss [N], plain NLL [N], no gradient)."""
    return _SmoothedCrossEntropy.apply(logits, target, eps)
