"""Closed-form predictions for a user's own torch model at step 0, from its current weights, beside what the
watcher measured (gradlab.theory holds every formula; this module only reads the model).

    mean_field  a plain MLP stack (an nn.Sequential, nested ones flattened, or a model of any class whose
                forward the watcher saw call its modules as a chain, gradlab.torch.modules.chain) of nn.Linear
                layers, each hidden one followed by one elementwise activation gradlab knows, the same for
                all; at least two hidden layers: sigma_w^2 = fan_in E[W^2] and sigma_b^2 = E[b^2] of the
                hidden-to-hidden Linears (hidden layers 1..k-1, whose weights carry delta_(l+1) to delta_l),
                chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] (gradlab.theory.chi1) and its per-layer factor
                sqrt(chi_1) of the batch mean of ||delta_l|| toward the input, against the measured factor:
                exp(-slope) of the least-squares line of ln delta_norm over the hidden layers
                (gradlab.diagnose.fit_factor).
    pascanu     per nn.RNN cell layer: gamma ||W_hh||_2 (gradlab.theory.gamma_norm; gamma 1 for tanh and
                relu), the per-step bound on ||dL/dh_(t-1)|| / ||dL/dh_t||. LSTMs and GRUs have none.
    lu_dead     a plain ReLU stack: the probability that a symmetric-init ReLU net with k hidden layers of width
                N is dead at a point, 1 - (1 - 2^-N)^k (gradlab.theory.lu_dead_probability); with unequal
                widths N_l, 1 - prod_l (1 - P(width N_l, 1 layer)), the same argument layer by layer.

Each is None where it does not apply (a model with normalization, residual connections, convolutions,
mixed activations, ...: mean field's recursion is not the plain one there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import nn

from gradlab import theory
from gradlab.diagnose import fit_factor
from gradlab.torch.modules import GRADLAB_ACTIVATIONS, RECURRENT, RESHAPES, gradlab_activation

Array = np.ndarray


def _flatten(model: nn.Module) -> list[nn.Module] | None:
    """An nn.Sequential's modules in order (nested Sequentials flattened, the reshapes of RESHAPES dropped); None
    otherwise."""
    if not isinstance(model, nn.Sequential):
        return None
    out = []
    for m in model:
        if isinstance(m, nn.Sequential):
            out.extend(_flatten(m))
        elif not isinstance(m, RESHAPES):
            out.append(m)
    return out


def plain_stack(model: nn.Module, modules: Sequence[nn.Module] | None = None) -> tuple[list[nn.Linear], object] | None:
    """(the Linear layers in order, the hidden layers' gradlab Activation) of a plain MLP stack: Linear (act
    Linear)* [act], one activation class (and slope) for every hidden layer; None for any other model.
    modules: the modules its forward calls in order, when they are known to form a chain (the watcher's probe
    forward, gradlab.torch.modules.chain), for a model of any class; default: an nn.Sequential's, flattened."""
    mods = _flatten(model) if modules is None else [m for m in modules if not isinstance(m, RESHAPES)]
    if not mods or not isinstance(mods[0], nn.Linear):
        return None
    linears, acts, i = [], [], 0
    while i < len(mods):
        if not isinstance(mods[i], nn.Linear):
            return None
        linears.append(mods[i])
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if type(nxt) in GRADLAB_ACTIVATIONS:
            acts.append(gradlab_activation(nxt))
            i += 2
        elif nxt is None or isinstance(nxt, nn.Linear):
            acts.append(None)
            i += 1
        else:
            return None  # a norm, dropout, an unknown activation, ...
    hidden = acts[:-1]  # every Linear but the last is a hidden layer
    if any(a is None for a in hidden) or len({(a.name, a.slope) for a in hidden}) > 1:
        return None
    return linears, (hidden[0] if hidden else None)


def weight_variances(linear: nn.Linear) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) = (fan_in E[W_ij^2], E[b_i^2]) of one Linear (sigma_b^2 = 0 without a bias),
    mean field's Var[W] = sigma_w^2 / fan_in, Var[b] = sigma_b^2 for zero-mean entries."""
    w = linear.weight.detach().double().cpu().numpy()
    b = linear.bias.detach().double().cpu().numpy() if linear.bias is not None else np.zeros(1)
    return float(np.mean(w * w)) * w.shape[1], float(np.mean(b * b))


def hidden_variances(linears: Sequence[nn.Linear]) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2): the means over `linears` (at least one) of their weight_variances."""
    sigma_w2, sigma_b2 = (float(np.mean(v)) for v in zip(*(weight_variances(lin) for lin in linears)))
    return sigma_w2, sigma_b2


def measured_init(linears: Sequence[nn.Linear]) -> tuple[float, float] | None:
    """(sigma_w^2, sigma_b^2) of any feed-forward model's Linears in forward order, the output layer last:
    hidden_variances of the hidden-to-hidden ones (linears[1:-1]), or of all when there are none (a net of
    one or two Linears); None without a Linear. What the runs table records as init "mean_field" at step 0,
    measured rather than assumed to be torch's default."""
    if not linears:
        return None
    return hidden_variances(linears[1:-1] or linears)


def mean_field(
    model: nn.Module, measured: Sequence[float] | None = None, modules: Sequence[nn.Module] | None = None
) -> dict | None:
    """The mean-field prediction for a plain MLP stack with >= 2 hidden layers (see the module docstring);
    measured: per-layer delta norms, layer 0 nearest the input (the hidden layers first; more entries, the
    output layer's, are ignored); modules: as plain_stack's. None for any other model."""
    stack = plain_stack(model, modules)
    if stack is None or len(stack[0]) < 3:
        return None
    linears, act = stack
    k = len(linears) - 1  # hidden layers
    sigma_w2, sigma_b2 = hidden_variances(linears[1:k])  # the hidden-to-hidden Linears
    chi1 = theory.chi1(act, sigma_w2, sigma_b2)
    out = {"activation": act.name, "hidden_layers": k, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "chi1": chi1,
           "predicted_factor": math.sqrt(chi1), "measured_factor": None}  # fmt: skip
    if measured is not None:
        values = np.asarray(measured, dtype=np.float64)
        if values.ndim != 1 or len(values) < k:
            raise ValueError(
                f"measured must hold one delta norm per layer (at least the {k} hidden layers), got shape {values.shape}"
            )
        factor, _ = fit_factor(values[:k], np.arange(k))
        out["measured_factor"] = None if math.isnan(factor) else factor
    return out


def pascanu(model: nn.Module) -> list[dict] | None:
    """gamma ||W_hh||_2 of every one-directional nn.RNN cell layer in the model (named_modules' order), each
    {"module", "layer", "nonlinearity", "gamma", "gamma_norm"}; None when the model has none."""
    out = []
    for name, m in model.named_modules():
        if RECURRENT.get(type(m)) != "rnn" or m.bidirectional:
            continue
        for j in range(m.num_layers):
            w = getattr(m, f"weight_hh_l{j}").detach().double().cpu().numpy()
            out.append({"module": name, "layer": j, "nonlinearity": m.nonlinearity, "gamma": theory.gamma(m.nonlinearity),
                        "gamma_norm": theory.gamma_norm(w, m.nonlinearity)})  # fmt: skip
    return out or None


def lu_dead(model: nn.Module, modules: Sequence[nn.Module] | None = None) -> dict | None:
    """Lu et al. 2019's probability that a symmetric-init plain ReLU stack is dead at a point, from its hidden
    widths; None unless the model is a plain ReLU stack with >= 1 hidden layer (modules: as plain_stack's)."""
    stack = plain_stack(model, modules)
    if stack is None or stack[1] is None or stack[1].name != "relu":
        return None
    widths = [lin.out_features for lin in stack[0][:-1]]
    if len(set(widths)) == 1:
        p = theory.lu_dead_probability(widths[0], len(widths))
    else:
        p = 1.0 - math.prod(1.0 - theory.lu_dead_probability(n, 1) for n in widths)
    return {"widths": widths, "hidden_layers": len(widths), "probability": p}


def step0(
    model: nn.Module, measured: Sequence[float] | None = None, modules: Sequence[nn.Module] | None = None
) -> dict:
    """The predictions for `model` at its current weights: {"mean_field": dict | None, "pascanu": list | None,
    "lu_dead": dict | None} (see the module docstring); measured: the watcher's per-layer delta norms at
    step 0, layer 0 nearest the input (for mean_field's measured_factor), or None; modules: as plain_stack's."""
    return {"mean_field": mean_field(model, measured, modules), "pascanu": pascanu(model),
            "lu_dead": lu_dead(model, modules)}  # fmt: skip


def sentence(predictions: dict) -> str:
    """One sentence naming every prediction that applies, with its numbers, for the diagnosis text; "" when
    none does."""
    parts = []
    mf = predictions.get("mean_field")
    if mf is not None:
        text = (f"mean field predicts delta_norm x{mf['predicted_factor']:.3g} per layer toward the input (chi_1 = "
                f"{mf['chi1']:.3g} for {mf['activation']} at sigma_w^2 = {mf['sigma_w2']:.3g}, "
                f"sigma_b^2 = {mf['sigma_b2']:.3g})")  # fmt: skip
        if mf["measured_factor"] is not None:
            text += f", measured x{mf['measured_factor']:.3g}"
        parts.append(text)
    parts.extend(_pascanu_text(predictions.get("pascanu") or []))
    lu = predictions.get("lu_dead")
    if lu is not None:
        widths = f"width {lu['widths'][0]}" if len(set(lu["widths"])) == 1 else f"widths {lu['widths']}"
        parts.append(f"Lu et al.'s probability that a ReLU net of {widths} with {lu['hidden_layers']} hidden layers "
                     f"is dead at a point is {lu['probability']:.3g}")  # fmt: skip
    if not parts:
        return ""
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _pascanu_text(entries: list[dict]) -> list[str]:
    """One clause per nn.RNN: its cell layers' gamma ||W_hh||_2."""
    modules: dict[str, list[dict]] = {}
    for p in entries:
        modules.setdefault(p["module"], []).append(p)
    out = []
    for name, ps in modules.items():
        values = ", ".join(f"{p['gamma_norm']:.3g}" for p in ps)
        where = f"cell layer{'s' if len(ps) > 1 else ''} {', '.join(str(p['layer']) for p in ps)}"
        out.append(f"Pascanu's bound gamma ||W_hh||_2 = {values} per step back in time in {where} of "
                   f"{name or 'the model'} ({ps[0]['nonlinearity']})")  # fmt: skip
    return out
