"""What the watcher measures in a torch model: its rows (one per row of the layers table) and, from the
order in which a probe forward calls the modules, the activation that follows each row.

    rows        every nn.Linear, normalization layer (LayerNorm, BatchNorm*, GroupNorm, InstanceNorm*,
                RMSNorm) and unidirectional nn.RNN / nn.LSTM / nn.GRU (one row per cell layer: num_layers
                rows), plus every module the user names, in the order model.named_modules() lists them;
                the watcher puts them in the order its probe forward calls them (layer 0 nearest the input).
    weights     a Linear's weight; a cell layer's weight_ih_l{j} and weight_hh_l{j}; a norm layer's gain;
                a named module's parameters whose names do not end in "bias". biases: the rest. An RNN /
                LSTM cell layer's bias is gradlab's merged one, b = b_ih + b_hh, whose gradient is either
                one's (dL/db = dL/db_ih = dL/db_hh), so its norm is ||dL/db_ih||; the GRU keeps both (as
                gradlab's GRU does).
    following   the activation of a row: the first activation module (torch.nn.modules.activation) the
                probe forward calls after the row's module, before any other row's or parametrised
                module (a norm layer or a dropout in between is passed over). None: the row's own output
                is its activation (gradlab's identity output layer). Activations written as functions
                (F.relu in a forward) are invisible here, and so is anything else a forward does between
                two modules (a residual sum): chain tells whether there was any.
    unsupported modules that hold parameters of their own but are no row (Conv2d, Embedding, a
                bidirectional LSTM, ...): named in one warning and skipped; their gradients still count
                in the global grad_norm.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradlab.nn import activations

NORM_TYPES: tuple[type, ...] = tuple(
    t for t in (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d, getattr(nn, "RMSNorm", None)) if t is not None
)  # fmt: skip
RECURRENT: dict[type, str] = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "rnn"}
GRADLAB_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
                                        nn.LeakyReLU: "leaky_relu", nn.Identity: "identity"}  # fmt: skip
RESHAPES = (nn.Identity, nn.Flatten)  # modules that leave a stack's arithmetic as it is (an MNIST MLP's Flatten)


@dataclass
class Row:
    """One row of the layers table: a module (or one cell layer of a stacked recurrent module)."""

    name: str  # the module's qualified name; "lstm.l1" for cell layer 1 of a stacked module
    module: nn.Module
    kind: str  # linear, norm, rnn, lstm, gru, module (a named one)
    weights: list[nn.Parameter] = field(default_factory=list)
    biases: list[nn.Parameter] = field(default_factory=list)
    cell: int | None = None  # the cell layer of a recurrent module


def is_activation(module: nn.Module) -> bool:
    """An elementwise activation module (torch.nn.modules.activation), not attention or softmax."""
    return type(module).__module__ == "torch.nn.modules.activation" and not isinstance(
        module, (nn.MultiheadAttention, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)
    )


def gradlab_activation(module: nn.Module | None) -> activations.Activation | None:
    """gradlab's Activation for a torch activation module (None: the row's output; identity), or None when
    gradlab has no such activation (its derivative, and so saturation, is unknown)."""
    if module is None:
        return activations.IDENTITY
    name = GRADLAB_ACTIVATIONS.get(type(module))
    slope = float(getattr(module, "negative_slope", activations.DEFAULT_SLOPE))
    if name is None or (name == "leaky_relu" and not 0 <= slope <= 1):  # gradlab's leaky ReLU: slopes in [0, 1]
        return None
    return activations.get(name, slope)


def chain(calls: list[tuple[nn.Module, Any, Any]]) -> list[nn.Module] | None:
    """The modules a forward called, in call order, when it was seen to be a chain: every call's first input is
    the very tensor the call before it returned, as nn.Sequential passes it on. calls: (module, first input,
    output) in the order the forward hooks fired. None when something else happened between two calls, which
    no hook sees: an F.relu, a residual sum, a reshape (each a new tensor that no module returned)."""
    for (_, _, before), (_, x, _) in zip(calls, calls[1:]):
        if x is None or x is not first_tensor(before):
            return None
    return [m for m, _, _ in calls]


def others(called: list[nn.Module], rows: list[Row]) -> str:
    """The runs table's other_modules: the class names (lower case, sorted, ", "-joined) of the modules a forward
    called that are none of a row, a module inside a named row, an activation or a reshape (an nn.Dropout, a
    parameterless module of the user's): what stands between the layers that gradlab's engine does not have."""
    inside = {id(m) for r in rows for m in r.module.modules()}
    names = {type(m).__name__.lower() for m in called
             if id(m) not in inside and not is_activation(m) and not isinstance(m, RESHAPES)}  # fmt: skip
    return ", ".join(sorted(names))


def follow_index(rows: list[Row], calls: list[tuple[nn.Module, Any]]) -> dict[int, int | None]:
    """Row index -> the index in calls of its following activation's call (None: none follows)."""
    first = {}
    for k, (m, _) in enumerate(calls):
        first.setdefault(id(m), k)
    row_modules = {id(r.module) for r in rows}
    out: dict[int, int | None] = {}
    for i, r in enumerate(rows):
        k0, out[i] = first.get(id(r.module)), None
        if k0 is None or r.kind in RECURRENT.values():
            continue
        for k in range(k0 + 1, len(calls)):
            n = calls[k][0]
            if is_activation(n):
                out[i] = k
                break
            if isinstance(n, NORM_TYPES):
                continue
            if id(n) in row_modules or _has_params(n):
                break
    return out


def shared_calls(calls: list[tuple[nn.Module, Any]], index: dict[int, int | None],
                 shared: dict[int, nn.Module]) -> dict[int, tuple[nn.Module, dict[int, int]]]:
    """id(activation) -> (the activation, {n: row}) for the activations several rows share (`shared`: row ->
    its following activation): its n-th call in the probe forward follows that row."""
    out: dict[int, tuple[nn.Module, dict[int, int]]] = {}
    for i, act in shared.items():
        n = sum(1 for m, _ in calls[: index[i]] if m is act)  # the calls of act before row i's one
        out.setdefault(id(act), (act, {}))[1][n] = i
    return out


def first_out(module: nn.Module, calls) -> Any:
    """The output of module's first call in calls ((module, output) pairs); None when it was not called."""
    return next((o for m, o in calls if m is module), None)


def sequence_length(module: nn.Module, x: Any) -> int | None:
    """T of a recurrent module's input x: (N, T, D) with batch_first, else (T, N, D), or (T, D) unbatched; None
    for a PackedSequence (no one length)."""
    if not isinstance(x, torch.Tensor):
        return None
    return int(x.shape[1] if x.dim() == 3 and module.batch_first else x.shape[0])


def recurrent_activation(module: nn.Module) -> str:
    """The runs table's activation of a recurrent module: nn.RNN's nonlinearity ("tanh" or "relu"); "tanh" for
    nn.LSTM and nn.GRU (their candidate's, the field's default for gradlab's gated cells, which do not read it)."""
    return module.nonlinearity if isinstance(module, nn.RNN) else "tanh"


def activation_name(module: nn.Module | None) -> str:
    """A following activation's name as the runs table writes it: gradlab's name, else the class's in lower case
    (also for a LeakyReLU whose slope is outside gradlab's [0, 1])."""
    act = gradlab_activation(module)
    return act.name if act is not None else type(module).__name__.lower()


def find_rows(model: nn.Module, names: list[str] | tuple[str, ...] = ()) -> list[Row]:
    """The model's rows (see the module docstring); warns once naming the unsupported modules."""
    named = set(_check_names(model, names))
    rows, skipped = [], []
    for qual, module in model.named_modules():
        if qual in named:
            rows.append(_named_row(qual, module))
        elif isinstance(module, nn.Linear):
            rows.append(Row(qual, module, "linear", [module.weight], _present(module.bias)))
        elif isinstance(module, NORM_TYPES):
            rows.append(Row(qual, module, "norm", _present(getattr(module, "weight", None)), _present(getattr(module, "bias", None))))
        elif type(module) in RECURRENT:
            why = _recurrent_unsupported(module)
            if why:
                skipped.append(f"{qual or 'the model'} ({type(module).__name__}: {why})")
            else:
                rows.extend(_cell_rows(qual, module))
        elif any(True for _ in module.parameters(recurse=False)):
            skipped.append(f"{qual or 'the model'} ({type(module).__name__})")
    if skipped:
        warnings.warn(
            "gradlab.torch: not watched (unsupported): " + ", ".join(skipped)
            + "; their gradients count in grad_norm; name a module in modules= to give it a row", stacklevel=3,
        )  # fmt: skip
    return rows


def _check_names(model: nn.Module, names) -> list[str]:
    known = dict(model.named_modules())
    for name in names:
        if name not in known:
            some = ", ".join(list(n for n in known if n)[:6])
            raise ValueError(f"modules: the model has no module named {name!r} (its modules include {some})")
    return list(names)


def _present(p: nn.Parameter | None) -> list[nn.Parameter]:
    return [p] if isinstance(p, nn.Parameter) else []


def _named_row(qual: str, module: nn.Module) -> Row:
    params = list(module.named_parameters())
    weights = [p for n, p in params if not n.endswith("bias")]
    biases = [p for n, p in params if n.endswith("bias")]
    return Row(qual, module, "module", weights, biases)


def _recurrent_unsupported(module: nn.Module) -> str:
    if module.bidirectional:
        return "bidirectional"
    if getattr(module, "proj_size", 0):
        return "proj_size"
    return ""


def _cell_rows(qual: str, module: nn.Module) -> list[Row]:
    kind, k = RECURRENT[type(module)], module.num_layers
    rows = []
    for j in range(k):
        p = lambda n: _present(getattr(module, f"{n}_l{j}", None))  # noqa: E731
        biases = p("bias_ih") + p("bias_hh") if kind == "gru" else p("bias_ih")[:1]
        rows.append(Row(f"{qual}.l{j}" if k > 1 else qual, module, kind, p("weight_ih") + p("weight_hh"), biases, j))
    return rows


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def leaves(model: nn.Module, rows: list[Row]) -> list[nn.Module]:
    """The modules whose calls a probe forward records: leaf modules and every row's module."""
    mods = {id(r.module): r.module for r in rows}
    for m in model.modules():
        if not any(True for _ in m.children()):
            mods.setdefault(id(m), m)
    return list(mods.values())


def first_tensor(out) -> torch.Tensor | None:
    """A module's output tensor: the output itself, or the first element of a tuple (nn.LSTM's (output, (h, c)))."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None
