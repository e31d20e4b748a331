"""The gradient norms the watcher takes, each over many tensors in one torch._foreach_norm call (each tensor's
norm in its own dtype, a half-precision one's in float32, their squares summed in float64), and the marks that
tell whether a .grad changed since it was measured (a replaced tensor, or an in-place edit: clip_grad_norm_ and
clip_grad_value_ count a tensor's _version up by one)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gradlab.probes.layers import safe_ratio

HALF = (torch.float16, torch.bfloat16)  # dtypes whose norms are taken in float32
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s: c = max_norm / (||g|| + 1e-6)


def global_norm(params: list[nn.Parameter]) -> float:
    """||g|| over every parameter's .grad (those without one count 0); NaN when none has one."""
    return total(grad_norms(params))


def grad_norms(params: list[nn.Parameter]) -> np.ndarray | None:
    """(P,) float64: each parameter's ||.grad|| (0 without one; tensor_norms); None when no parameter has a .grad."""
    grads = [p.grad for p in params]
    have = [k for k, g in enumerate(grads) if g is not None]
    if not have:
        return None
    out = np.zeros(len(params))
    out[have] = tensor_norms([grads[k] for k in have])
    return out


def tensor_norms(tensors: list[torch.Tensor]) -> np.ndarray:
    """(K,) float64: each tensor's L2 norm from one torch._foreach_norm call, in the tensor's dtype; a second call
    takes the half-precision ones in float32 (rounded to bfloat16's 8 bits a gradient norm was 1e-3 off)."""
    half = [t.dtype in HALF for t in tensors]
    if not any(half):  # the usual case: one call, as fast as before half precision was handled
        return torch.stack(torch._foreach_norm(tensors)).double().cpu().numpy() if tensors else np.zeros(0)
    out = np.zeros(len(tensors))
    for want, dtype in ((False, None), (True, torch.float32)):
        at = [k for k, h in enumerate(half) if h is want]
        if at:
            out[at] = torch.stack(torch._foreach_norm([tensors[k] for k in at], 2, dtype=dtype)).double().cpu().numpy()
    return out


def clip_(params: list[nn.Parameter], norm: float, max_norm: float) -> float:
    """Scale every .grad in place by c = max_norm / (norm + 1e-6) where c < 1, torch.nn.utils.clip_grad_norm_'s
    factor (a NaN c too, as torch's turns the gradients NaN); no pass over them where c >= 1 (torch multiplies
    by 1, which changes no value). Returns c, or 1.0 where nothing was scaled."""
    coef = max_norm / (norm + CLIP_EPS)  # NaN for a NaN norm, 0 for an inf one
    if coef >= 1.0:
        return 1.0
    present = [p.grad for p in params if p.grad is not None]
    if present:
        torch._foreach_mul_(present, coef)
    return coef


def total(norms: np.ndarray | None) -> float:
    """sqrt(sum of the squares) of per-tensor norms, in float64 (an inf or NaN norm stays one); NaN for None."""
    return math.nan if norms is None else float(np.sqrt(np.dot(norms, norms)))


def grad_marks(params: list[nn.Parameter]) -> list[tuple[torch.Tensor | None, int]]:
    """Each parameter's .grad (the tensor itself, or None) and its _version counter."""
    return [(g, -1 if g is None else g._version) for g in (p.grad for p in params)]


def unchanged(params: list[nn.Parameter], marks: list[tuple[torch.Tensor | None, int]]) -> bool:
    """No .grad replaced (set, deleted or a new tensor) or edited in place since the marks were taken."""
    return all(p.grad is g and (g is None or g._version == v) for p, (g, v) in zip(params, marks))


def group_norms(groups: list[list[torch.Tensor | None]]) -> np.ndarray:
    """(G,) float64: the L2 norm of each group of tensors together (None counts 0; an empty group 0): the tensors'
    norms (tensor_norms), their squares summed in float64."""
    flat = [t for g in groups for t in g if t is not None]
    norms = tensor_norms(flat)
    sq, k = np.zeros(len(groups)), 0
    for j, g in enumerate(groups):
        n = sum(t is not None for t in g)
        sq[j] = float(np.dot(norms[k : k + n], norms[k : k + n]))
        k += n
    return np.sqrt(sq)


def example_norms(grad: torch.Tensor, batch_axis: int = 0) -> torch.Tensor:
    """Per-example L2 norms (N,) over every axis but the batch axis, where the gradient is, in its dtype, or in
    float32 for a half-precision one (autocast's bfloat16 or float16 outputs: a norm rounded to 8 or 11 bits
    would be the measurement's largest error); Watcher._batch_means averages them in float64."""
    g = grad.detach()
    if batch_axis:
        g = g.movedim(batch_axis, 0)
    wide = torch.float32 if g.dtype in HALF else None
    return torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1, dtype=wide)


def update_ratios(weights: list[list[nn.Parameter]], before: list[list[torch.Tensor]]) -> np.ndarray:
    """Per row ||W_after - W_before|| / ||W_after|| over its weights together (gradlab.probes.layers' ratio)."""
    after = [[w.detach() for w in ws] for ws in weights]
    flat = [t for b in before for t in b]
    if flat:
        torch._foreach_sub_(flat, [t for a in after for t in a])  # the snapshot becomes W_before - W_after (last use)
    norms = group_norms(before + after)  # one pass for both
    return np.array([safe_ratio(d, n) for d, n in zip(norms[: len(before)], norms[len(before) :])])
