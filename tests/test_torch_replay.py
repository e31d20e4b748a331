"""gradlab.torch.replay against torch (skipped when torch is not installed).

The truth is a torch cell loop (nn.RNNCell / nn.LSTMCell / nn.GRUCell holding the fused module's weights,
layer by layer, step by step) with retain_grad on every h_t and c_t, in float64. The replay gets only what a
watcher can capture from the fused module itself: its input, hx, and the gradients of its output sequence,
h_n and c_n (retain_grad on the fused module's outputs). Every layer's and step's dL/dh_t (dL/dc_t) must
match within 1e-10 relative (norm-wise over the batch and units of one step), for nn.RNN (tanh, relu),
nn.LSTM, nn.GRU, num_layers 1-3, batch_first both ways, with the loss on every step, on the last step, on
h_n (and c_n) with the last step, and on h_n alone (the output unused: grad_output None). Also: dL/dh0 and
the weight gradients against the fused module's own, bias=False, hx None, a float32 module, unbatched
inputs, dropout in eval mode, the timesteps-table rows, and the one-line refusals.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
nn = torch.nn

from gradlab.torch import replay  # noqa: E402  (after the importorskip)

TOL = 1e-10  # relative, float64
N, T, D, H, O = 3, 6, 4, 5, 2
KINDS = {
    "rnn_tanh": (nn.RNN, nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, nn.LSTMCell, {}),
    "gru": (nn.GRU, nn.GRUCell, {}),
}
LOSSES = ("every step", "last step", "h_n and last step", "h_n only")


# ---------------------------------------------------------------- helpers


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """||ours - theirs|| / max(||ours||, ||theirs||), 0 when both are 0."""
    scale = max(float(np.linalg.norm(ours)), float(np.linalg.norm(theirs)))
    return 0.0 if scale == 0 else float(np.linalg.norm(ours - theirs)) / scale


def assert_step(ours, theirs, what: str, j: int, t: int, tol: float = TOL) -> None:
    """One layer's, one step's (N, H) gradient within tol relative; the message names layer, t, the worst
    entry and both values there."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what} layer {j} t {t}: shape {ours.shape}, torch's {theirs.shape}"
    err = rel_error(ours, theirs)
    if not err < tol:
        n, i = np.unravel_index(int(np.argmax(np.abs(ours - theirs))), ours.shape)
        raise AssertionError(f"{what} layer {j} t {t}: relative error {err:.3g} >= {tol:g}; worst at example {n} "
                             f"unit {i}: replay {ours[n, i]!r}, torch {theirs[n, i]!r}")  # fmt: skip


def assert_array(ours, theirs, what: str, tol: float = TOL) -> None:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch's {theirs.shape}"
    err = rel_error(ours, theirs)
    assert err < tol, f"{what}: relative error {err:.3g} >= {tol:g}; replay {ours.ravel()[:4]}, torch {theirs.ravel()[:4]}"


def fused(kind: str, layers: int, batch_first: bool, seed: int = 0, dtype=torch.float64, **options) -> nn.Module:
    """A fused module with torch's default init, its biases moved off it (so a bias bug cannot hide)."""
    torch.manual_seed(seed)
    cls, _, extra = KINDS[kind]
    module = cls(D, H, num_layers=layers, batch_first=batch_first, **extra, **options).to(dtype)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "bias" in name:
                p.add_(0.2 * torch.randn_like(p))
    return module


def draw(module: nn.Module, seed: int = 1, zero_state: bool = False):
    """x in the module's layout and hx (random, or None), each with requires_grad."""
    g = torch.Generator().manual_seed(seed)
    dtype = next(module.parameters()).dtype
    shape = (N, T, D) if module.batch_first else (T, N, D)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if zero_state:
        return x, None
    state = lambda: (0.5 * torch.randn(module.num_layers, N, H, generator=g, dtype=dtype)).requires_grad_()  # noqa: E731
    return x, ((state(), state()) if isinstance(module, nn.LSTM) else state())


def targets(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(H, O, generator=g, dtype=torch.float64)
    return A, torch.randn(N, T, O, generator=g, dtype=torch.float64), torch.randn(H, O, generator=g, dtype=torch.float64)


def loss_fn(name: str, seed: int = 2):
    """The loss `name` as a function of the output (batch-major (N, T, H)), h_n and c_n (LSTM; else None)
    (num_layers, N, H)."""
    A, y, B = targets(seed)
    every = lambda o: 0.5 * ((o @ A - y) ** 2).sum()  # noqa: E731  a squared error on every step
    last = lambda o: 0.5 * ((o[:, -1] @ A - y[:, -1]) ** 2).sum()  # noqa: E731  on the last step
    on_states = lambda h_n, c_n: (torch.tanh(h_n @ B) ** 2).sum() + (0.3 * (c_n**2).sum() if c_n is not None else 0.0)  # noqa: E731
    return {
        "every step": lambda o, h_n, c_n: every(o),
        "last step": lambda o, h_n, c_n: last(o),
        "h_n and last step": lambda o, h_n, c_n: last(o) + on_states(h_n, c_n),
        "h_n only": lambda o, h_n, c_n: on_states(h_n, c_n),
    }[name]


def batch_major(a, module):
    return a if module.batch_first else a.transpose(0, 1)


def captured(module: nn.Module, x, hx, loss):
    """What a watcher captures from the fused module: grad_output (None when the output is unused),
    grad_hn, grad_cn (None when unused), after the loss's backward; and the fused module's hx's gradient."""
    out, state = module(x, hx)
    h_n, c_n = state if isinstance(module, nn.LSTM) else (state, None)
    for t in (out, h_n, c_n):
        if t is not None:
            t.retain_grad()
    loss(batch_major(out, module), h_n, c_n).backward()
    return out.grad, h_n.grad, None if c_n is None else c_n.grad


def cell_loop(kind: str, module: nn.Module, x, hx, loss):
    """The truth: a per-step loop of torch cells with the module's weights (float64), retain_grad on every
    h_t and c_t; returns hs[j][t], cs[j][t] (LSTM, else None) after the loss's backward, and h0's gradient."""
    _, cell_cls, extra = KINDS[kind]
    L, lstm = module.num_layers, kind == "lstm"
    x_bm = batch_major(x, module).double()
    if hx is None:
        h0 = torch.zeros(L, N, H, dtype=torch.float64, requires_grad=True)
        c0 = torch.zeros(L, N, H, dtype=torch.float64, requires_grad=True) if lstm else None
    else:
        h0, c0 = (hx[0], hx[1]) if lstm else (hx, None)
        h0 = h0.detach().double().requires_grad_()
        c0 = c0.detach().double().requires_grad_() if lstm else None
    hs, cs, layer_in = [], [], x_bm
    for j in range(L):
        cell = cell_cls(layer_in.shape[-1], H, bias=module.bias, **extra).double()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                if hasattr(cell, name) and getattr(cell, name) is not None:
                    getattr(cell, name).copy_(getattr(module, f"{name}_l{j}").double())
        h, c, hs_j, cs_j = h0[j], c0[j] if lstm else None, [], []
        for t in range(T):
            if lstm:
                h, c = cell(layer_in[:, t], (h, c))
                c.retain_grad()
                cs_j.append(c)
            else:
                h = cell(layer_in[:, t], h)
            h.retain_grad()
            hs_j.append(h)
        hs.append(hs_j)
        cs.append(cs_j)
        layer_in = torch.stack(hs_j, dim=1)
    h_n = torch.stack([hs_j[-1] for hs_j in hs])
    c_n = torch.stack([cs_j[-1] for cs_j in cs]) if lstm else None
    loss(layer_in, h_n, c_n).backward()
    return hs, cs if lstm else None, h0.grad


def compare_steps(r, hs, cs, layers: int, label: str) -> None:
    assert len(r.dh) == layers, f"{label}: {len(r.dh)} layers of dh, expected {layers}"
    for j in range(layers):
        for t in range(T):
            assert_step(r.dh[j][:, t], hs[j][t].grad, f"{label} dL/dh_t", j, t)
            if cs is not None:
                assert_step(r.dc[j][:, t], cs[j][t].grad, f"{label} dL/dc_t", j, t)


# ---------------------------------------------------------------- the replay against the cell loop


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_replay_matches_a_torch_cell_loop(kind, layers, batch_first, loss_name):
    module = fused(kind, layers, batch_first, seed=layers)
    x, hx = draw(module)
    grad_output, grad_hn, grad_cn = captured(module, x, hx, loss_fn(loss_name))
    if loss_name == "h_n only":
        assert grad_output is None, "the output is unused: torch gives it no gradient"
    r = replay.recurrent(module, x, hx, grad_output, grad_hn, grad_cn)
    hs, cs, dh0 = cell_loop(kind, module, x, hx, loss_fn(loss_name))
    label = f"{kind} layers={layers} batch_first={batch_first} loss on {loss_name}:"
    compare_steps(r, hs, cs, layers, label)
    assert (r.dc is None) == (kind != "lstm"), f"{label} dc is {'None' if r.dc is None else 'given'}"
    assert_array(r.dh0, dh0, f"{label} dL/dh0 (cell loop)")
    assert_array(r.dh0, hx[0].grad if kind == "lstm" else hx.grad, f"{label} dL/dh0 (fused module)")
    for name, p in module.named_parameters():
        assert_array(r.weight_grads[name], p.grad, f"{label} dL/d{name}")
    assert sorted(r.weight_grads) == sorted(n for n, _ in module.named_parameters()), f"{label} weight_grads' names"
    for j in range(layers):  # the replayed states are the cell loop's
        assert_array(r.h[j], torch.stack(hs[j], dim=1), f"{label} h_t of layer {j}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_replay_without_bias_and_from_zero_state(kind):
    module = fused(kind, 2, True, seed=5, bias=False)
    x, hx = draw(module, zero_state=True)
    assert hx is None
    grad_output, grad_hn, grad_cn = captured(module, x, hx, loss_fn("h_n and last step"))
    r = replay.recurrent(module, x, None, grad_output, grad_hn, grad_cn)
    hs, cs, _ = cell_loop(kind, module, x, None, loss_fn("h_n and last step"))
    compare_steps(r, hs, cs, 2, f"{kind} bias=False hx=None:")
    assert sorted(r.weight_grads) == ["weight_hh_l0", "weight_hh_l1", "weight_ih_l0", "weight_ih_l1"], sorted(r.weight_grads)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_module_replays_in_float64(kind):
    """A float32 module with a loss linear in its output, sum <G, output>, G float32: the captured gradient
    is G exactly, so the replay (float64 arithmetic on the float32 weights and inputs) must match a
    float64 cell loop of the same values within 1e-10, far below float32's 6e-8."""
    module = fused(kind, 2, False, seed=6, dtype=torch.float32)
    x, hx = draw(module, zero_state=True)
    G = torch.randn(T, N, H, generator=torch.Generator().manual_seed(9), dtype=torch.float32)
    out, _ = module(x)
    out.retain_grad()
    (out * G).sum().backward()
    assert torch.equal(out.grad, G)
    r = replay.recurrent(module, x, None, out.grad)
    assert all(d.dtype == np.float64 for d in r.dh), [d.dtype for d in r.dh]
    G_bm = G.double().transpose(0, 1)
    hs, cs, _ = cell_loop(kind, module.double(), x.double(), None, lambda o, h_n, c_n: (o * G_bm).sum())
    compare_steps(r, hs, cs, 2, f"{kind} float32:")


@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input_replays_as_one_example(kind):
    module = fused(kind, 2, True, seed=7)
    x = torch.randn(T, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out, state = module(x)  # unbatched: out (T, H), h_n (layers, H)
    h_n, c_n = state if kind == "lstm" else (state, None)
    out.retain_grad()
    h_n.retain_grad()
    ((out**2).sum() + h_n.sum()).backward()
    r = replay.recurrent(module, x, None, out.grad, h_n.grad)
    assert r.dh[0].shape == (1, T, H), r.dh[0].shape
    # the same example as a batch of one (batch_first): the replay must give the same gradients
    x1 = x[None]
    out1, state1 = module(x1)
    h1 = state1[0] if kind == "lstm" else state1
    out1.retain_grad()
    h1.retain_grad()
    ((out1**2).sum() + h1.sum()).backward()
    r1 = replay.recurrent(module, x1, None, out1.grad, h1.grad)
    for j in range(2):
        assert_array(r.dh[j], r1.dh[j], f"{kind} unbatched layer {j} dL/dh_t")


def test_dropout_in_eval_mode_replays():
    module = fused("lstm", 2, True, seed=8, dropout=0.4).eval()
    x, hx = draw(module)
    grads = captured(module, x, hx, loss_fn("every step"))
    r = replay.recurrent(module, x, hx, *grads)
    hs, cs, _ = cell_loop("lstm", module, x, hx, loss_fn("every step"))
    compare_steps(r, hs, cs, 2, "lstm dropout=0.4 eval:")


# ---------------------------------------------------------------- the timesteps rows


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_timestep_rows_are_batch_means_of_per_example_norms(kind):
    module = fused(kind, 2, True, seed=9)
    x, hx = draw(module)
    grads = captured(module, x, hx, loss_fn("every step"))
    r = replay.recurrent(module, x, hx, *grads)
    hs, cs, _ = cell_loop(kind, module, x, hx, loss_fn("every step"))
    rows = replay.timestep_rows(r)
    assert list(rows.columns) == ["layer", "t", "dh_norm", "dc_norm"], list(rows.columns)
    assert list(rows["layer"]) == [j for j in range(2) for _ in range(T)] and list(rows["t"]) == list(range(T)) * 2
    for (j, t), row in rows.set_index(["layer", "t"]).iterrows():
        want = float(hs[j][t].grad.norm(dim=1).mean())  # the batch mean of per-example norms, from torch
        assert abs(row["dh_norm"] - want) <= 1e-10 * want, f"dh_norm layer {j} t {t}: {row['dh_norm']!r}, torch {want!r}"
        if kind == "lstm":
            want_c = float(cs[j][t].grad.norm(dim=1).mean())
            assert abs(row["dc_norm"] - want_c) <= 1e-10 * want_c, f"dc_norm layer {j} t {t}: {row['dc_norm']!r}, torch {want_c!r}"
        else:
            assert np.isnan(row["dc_norm"]), f"dc_norm layer {j} t {t} of a GRU: {row['dc_norm']!r}, expected NaN"


# ---------------------------------------------------------------- refusals


def test_unsupported_modules_are_refused_in_one_line():
    x = torch.randn(N, T, D, dtype=torch.float64)
    g = torch.zeros(N, T, 2 * H, dtype=torch.float64)
    cases = [
        (nn.LSTM(D, H, batch_first=True, bidirectional=True), r"^bidirectional=True is not supported"),
        (nn.LSTM(D, H, batch_first=True, proj_size=2), r"^proj_size=2 is not supported"),
        (nn.GRU(D, H, num_layers=2, batch_first=True, dropout=0.3), r"^dropout=0.3 in training mode is not supported"),
        (nn.Linear(D, H), r"^module must be a torch nn.RNN, nn.LSTM or nn.GRU, got Linear$"),
    ]
    for module, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            replay.recurrent(module.double(), x, None, g)
        assert "\n" not in str(info.value), str(info.value)


def test_bad_inputs_are_refused_naming_them():
    module = fused("lstm", 2, True)
    x, hx = draw(module)
    grads = captured(module, x, hx, loss_fn("every step"))
    with pytest.raises(ValueError, match=r"^grad_output must have shape \(N, T, hidden_size\) \(batch_first=True\) = \(3, 6, 5\), got \(6, 3, 5\)$"):
        replay.recurrent(module, x, hx, grads[0].transpose(0, 1))
    with pytest.raises(ValueError, match=r"^grad_hn must have shape \(num_layers, N, hidden_size\) = \(2, 3, 5\), got \(3, 5\)$"):
        replay.recurrent(module, x, hx, grads[0], torch.zeros(N, H))
    with pytest.raises(ValueError, match=r"^hx of an nn.LSTM must be a pair \(h0, c0\) or None, got Tensor$"):
        replay.recurrent(module, x, hx[0], grads[0])
    with pytest.raises(ValueError, match=r"^inputs is a PackedSequence"):
        replay.recurrent(module, nn.utils.rnn.pack_padded_sequence(x, [T] * N, batch_first=True), hx, grads[0])
    gru = fused("gru", 1, True)
    with pytest.raises(ValueError, match=r"^grad_cn is the gradient of the LSTM's c_n; an nn.GRU has no cell state$"):
        replay.recurrent(gru, x, None, None, None, torch.zeros(1, N, H))


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_arithmetic_on_request(kind):
    """dtype="float32" (the watcher's replay of a float32 module): the arithmetic is float32 (every layer's
    dL/dh_t moves from the float64 replay's by more than float64's rounding and less than float32's:
    1e-12 < relative error < 1e-4), the returned arrays are float64 all the same, and gradients of 1e-25,
    whose squares float32 would flush to 0, keep their norms in the timesteps rows."""
    module = fused(kind, 2, True, seed=8, dtype=torch.float32)
    x, hx = draw(module)
    g = torch.randn(N, T, H, generator=torch.Generator().manual_seed(4)) * 1e-25
    wide, narrow = (replay.recurrent(module, x, hx, g, dtype=d) for d in ("float64", "float32"))
    for j, (a, b) in enumerate(zip(narrow.dh, wide.dh)):
        assert a.dtype == np.float64, f"{kind} layer {j}: dh dtype {a.dtype}, expected float64"
        err = rel_error(a, b)
        assert 1e-12 < err < 1e-4, f"{kind} layer {j}: float32 replay vs float64 replay relative error {err:.3g}, expected in (1e-12, 1e-4)"
    rows = replay.timestep_rows(narrow)
    assert (rows["dh_norm"] > 1e-27).all(), f"{kind}: dh_norm of 1e-25-sized gradients underflowed: min {rows['dh_norm'].min()!r}"


def test_dtype_other_than_float32_or_float64_is_refused():
    module = fused("gru", 1, True)
    x, _ = draw(module)
    with pytest.raises(ValueError, match=r"^dtype must be one of float64, float32 \(the replay's arithmetic\), got 'float16'$"):
        replay.recurrent(module, x, None, torch.zeros(N, T, H, dtype=torch.float64), dtype="float16")
