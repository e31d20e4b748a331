"""gradlab.torch.theory: the step-0 predictions for a user's torch model (skipped when torch is not installed).

- Each prediction equals gradlab.theory called directly with the model's own weight statistics.
- The mean-field factor sqrt(chi_1) matches the measured per-layer factor of ||delta_l|| (retain_grad on
  every Linear's output) of wide random MLPs (width 400, 10 hidden layers, 200 examples, float64, seeds
  0-2) at critical and off-critical init, within 1% for tanh (inputs at the fixed point q*) and 3% for
  ReLU (homogeneous: any input scale; its per-layer factor fluctuates more at finite width). The nine
  nets of each deviated by at most 0.54% (tanh) and 1.7% (ReLU) when these tolerances were set.
- Pascanu's bound: with the loss on the last step, ||dL/dh_k|| <= (gamma ||W_hh||_2)^(T-1-k) ||dL/dh_(T-1)||
  for every example and step, dL/dh_k from gradlab.torch.replay, tanh and relu RNNs, below and above rate 1.
- Lu et al.'s probability from the model's widths (equal and unequal).
- None where a prediction does not apply, and the sentence naming every number.
"""

import math

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
nn = torch.nn

from gradlab import theory  # noqa: E402
from gradlab.torch import replay  # noqa: E402
from gradlab.torch import theory as tt  # noqa: E402

WIDTH, DEPTH, BATCH = 400, 10, 200


def mlp(act, sigma_w2, sigma_b2, width=WIDTH, depth=DEPTH, d_in=WIDTH, d_out=10, seed=0):
    """A plain stack Linear (act Linear)^depth with W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2), float64."""
    torch.manual_seed(seed)
    mods, fan = [], d_in
    for width_l in [width] * depth + [d_out]:
        lin = nn.Linear(fan, width_l).double()
        with torch.no_grad():
            lin.weight.normal_(0.0, math.sqrt(sigma_w2 / fan))
            lin.bias.normal_(0.0, math.sqrt(sigma_b2))
        mods.append(lin)
        if width_l == width:
            mods.append(act())
        fan = width_l
    return nn.Sequential(*mods)


def delta_norms(model, x, seed):
    """Per Linear (layer 0 nearest the input): the batch mean of per-example ||dL/dz_l|| for L = <G, output>."""
    zs, h = [], x
    for m in model:
        h = m(h)
        if isinstance(m, nn.Linear):
            h.retain_grad()
            zs.append(h)
    G = torch.randn(h.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (h * G).sum().backward()
    return [float(z.grad.norm(dim=1).mean()) for z in zs]


def hidden_variances(model):
    """fan_in E[W^2] and E[b^2] of each hidden-to-hidden Linear, straight from the weights."""
    linears = [m for m in model if isinstance(m, nn.Linear)][1:-1]
    sw = [float((lin.weight.detach().double() ** 2).mean()) * lin.in_features for lin in linears]
    sb = [float((lin.bias.detach().double() ** 2).mean()) for lin in linears]
    return float(np.mean(sw)), float(np.mean(sb))


# ---------------------------------------------------------------- against gradlab.theory


@pytest.mark.parametrize("act,name", [(nn.Tanh, "tanh"), (nn.ReLU, "relu"), (nn.Sigmoid, "sigmoid")])
def test_mean_field_is_gradlab_theory_at_the_models_own_variances(act, name):
    model = mlp(act, 1.7, 0.1, width=30, depth=4, d_in=7, seed=3)
    sigma_w2, sigma_b2 = hidden_variances(model)
    mf = tt.step0(model)["mean_field"]
    assert mf["activation"] == name and mf["hidden_layers"] == 4, mf
    for key, want in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2), ("chi1", theory.chi1(name, sigma_w2, sigma_b2))):
        assert abs(mf[key] - want) <= 1e-12 * abs(want), f"{name} {key}: {mf[key]!r}, gradlab.theory / the weights {want!r}"
    assert mf["predicted_factor"] == pytest.approx(math.sqrt(mf["chi1"]), rel=1e-15), mf
    assert mf["measured_factor"] is None, "no measurement given, so no measured factor"


def test_a_flatten_leaves_the_stack_plain():
    """An MNIST-style MLP (nn.Flatten first) is the plain stack of its Linears: the same predictions as without."""
    body = mlp(nn.ReLU, 2.0, 0.01, width=12, depth=3, d_in=6, seed=1)
    with_flatten = nn.Sequential(nn.Flatten(), *body)
    assert tt.step0(with_flatten) == tt.step0(body) and tt.step0(body)["mean_field"] is not None, tt.step0(with_flatten)
    assert tt.step0(nn.Sequential(nn.Flatten(), *body, nn.Dropout(0.1)))["mean_field"] is None, "a dropout is no reshape"


def test_leaky_relu_keeps_its_slope():
    model = nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)).double()
    mf = tt.step0(model)["mean_field"]
    want = theory.chi1("leaky_relu", mf["sigma_w2"], mf["sigma_b2"], slope=0.2)  # sigma_w2 (1 + a^2) / 2
    assert mf["chi1"] == pytest.approx(want, rel=1e-14), f"leaky ReLU chi_1 {mf['chi1']!r}, theory {want!r}"
    assert tt.step0(model)["lu_dead"] is None, "a leaky ReLU stack has no dead-network probability"


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_pascanu_is_gamma_norm_of_every_cell_layer(nonlinearity):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 6, num_layers=2, nonlinearity=nonlinearity, batch_first=True)
            self.lstm = nn.LSTM(6, 4)  # no Pascanu bound: gated
            self.head = nn.Linear(4, 1)

    model = Model()
    got = tt.step0(model)["pascanu"]
    assert [(p["module"], p["layer"]) for p in got] == [("rnn", 0), ("rnn", 1)], got
    for p in got:
        w = getattr(model.rnn, f"weight_hh_l{p['layer']}").detach().double().numpy()
        want = theory.gamma_norm(w, nonlinearity)
        assert p["gamma"] == 1.0 and abs(p["gamma_norm"] - want) <= 1e-14 * want, f"layer {p['layer']}: {p}, theory {want!r}"
        assert abs(want - np.linalg.svd(w, compute_uv=False)[0]) <= 1e-12 * want, "gamma 1: the largest singular value"


@pytest.mark.parametrize("widths", [[3, 3, 3, 3, 3], [2, 5, 4]])
def test_lu_dead_probability_from_the_models_widths(widths):
    mods, fan = [], 2
    for w in widths:
        mods += [nn.Linear(fan, w), nn.ReLU()]
        fan = w
    model = nn.Sequential(*mods, nn.Linear(fan, 1))
    lu = tt.step0(model)["lu_dead"]
    want = 1.0 - math.prod(1.0 - 2.0**-n for n in widths)  # 1 - (1 - 2^-N)^k for equal widths
    assert lu["widths"] == widths and lu["hidden_layers"] == len(widths), lu
    assert abs(lu["probability"] - want) <= 1e-14, f"widths {widths}: {lu['probability']!r}, expected {want!r}"
    if len(set(widths)) == 1:
        assert lu["probability"] == theory.lu_dead_probability(widths[0], len(widths))


# ---------------------------------------------------------------- against measurement


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("regime", [0.5, 1.0, 1.5])  # sigma_w^2 over the critical one: ordered, critical, chaotic
@pytest.mark.parametrize("act,name,tol", [(nn.Tanh, "tanh", 0.01), (nn.ReLU, "relu", 0.03)])
def test_mean_field_factor_matches_a_wide_random_mlp(act, name, tol, regime, seed):
    sigma_b2 = 0.05
    sigma_w2 = regime * theory.critical_sigma_w2(name, sigma_b2)
    model = mlp(act, sigma_w2, sigma_b2, seed=seed)
    scale = 1.0
    if name == "tanh":  # start at the fixed point: mean field's factor is the one at q*
        scale = math.sqrt((theory.q_star(name, sigma_w2, sigma_b2) - sigma_b2) / sigma_w2)
    x = scale * torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(10 + seed), dtype=torch.float64)
    mf = tt.step0(model, delta_norms(model, x, seed=20 + seed))["mean_field"]
    got, want = mf["measured_factor"], mf["predicted_factor"]
    assert abs(got / want - 1) <= tol, (
        f"{name} sigma_w2 = {sigma_w2:.3f} ({regime} x critical), seed {seed}: measured factor {got:.4f}, "
        f"mean field {want:.4f} (relative {got / want - 1:+.4f}, tolerance {tol})"
    )


@pytest.mark.parametrize("gain", [0.7, 1.0, 1.6])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_pascanu_bound_holds_for_every_example_of_the_replay(nonlinearity, gain):
    torch.manual_seed(4)
    N, T, D, H = 8, 20, 3, 12
    rnn = nn.RNN(D, H, nonlinearity=nonlinearity, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(gain * torch.linalg.qr(torch.randn(H, H, dtype=torch.float64))[0])  # ||W_hh||_2 = gain
    x = torch.randn(N, T, D, dtype=torch.float64)
    out, _ = rnn(x)
    out.retain_grad()
    (out[:, -1] * torch.randn(N, H, dtype=torch.float64)).sum().backward()  # the loss on the last step
    dh = replay.recurrent(rnn, x, None, out.grad).dh[0]  # (N, T, H)
    (p,) = tt.step0(rnn)["pascanu"]
    assert p["gamma_norm"] == pytest.approx(gain, rel=1e-12), p
    bound = theory.pascanu_factors(p["gamma_norm"], T)  # (gamma ||W_hh||_2)^(T-1-k)
    norms = np.linalg.norm(dh, axis=2)  # (N, T)
    allowed = bound[None, :] * norms[:, -1:] * (1 + 1e-12)
    bad = np.argwhere(norms > allowed)
    assert not len(bad), (f"{nonlinearity} gain {gain}: ||dL/dh_k|| above the bound at (example, k) {bad[0].tolist()}: "
                          f"{norms[tuple(bad[0])]!r} > {allowed[tuple(bad[0])]!r}")  # fmt: skip
    assert norms[:, 0].max() > 0, "the gradient reaches the first step (the bound is not met by zeros)"


# ---------------------------------------------------------------- where nothing applies; the sentence


@pytest.mark.parametrize(
    "model,why",
    [
        (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), "one hidden layer: no hidden-to-hidden factor"),
        (nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)), "a norm layer"),
        (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)), "mixed activations"),
        (nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 1)), "an activation gradlab lacks"),
        (nn.LSTM(4, 8), "a gated recurrent module"),
        (nn.Linear(4, 1), "not a Sequential"),
    ],
)
def test_no_prediction_where_none_applies(model, why):
    got = tt.step0(model)
    assert got == {"mean_field": None, "pascanu": None, "lu_dead": None}, f"{why}: {got}"
    assert tt.sentence(got) == "", f"{why}: {tt.sentence(got)!r}"


def test_mean_field_needs_one_measured_norm_per_hidden_layer():
    model = mlp(nn.Tanh, 1.0, 0.0, width=6, depth=3, d_in=2)
    with pytest.raises(ValueError, match=r"^measured must hold one delta norm per layer \(at least the 3 hidden layers\), got shape \(2,\)$"):
        tt.step0(model, [1.0, 2.0])


def test_sentence_names_every_prediction_with_its_numbers():
    model = mlp(nn.ReLU, 2.0, 0.0, width=4, depth=6, d_in=3, seed=1)
    measured = [0.5 * 0.9**-l for l in range(7)]  # factor 0.9 per layer toward the input, exactly
    got = tt.step0(model, measured)
    assert got["mean_field"]["measured_factor"] == pytest.approx(0.9, rel=1e-12), got["mean_field"]
    text = tt.sentence(got)
    mf, lu = got["mean_field"], got["lu_dead"]
    for number in (f"x{mf['predicted_factor']:.3g}", f"chi_1 = {mf['chi1']:.3g}", "measured x0.9", f"{lu['probability']:.3g}", "width 4"):
        assert number in text, f"{number!r} not in {text!r}"
    assert text.endswith(".") and text[0].isupper(), text
    rnn = nn.RNN(2, 3, num_layers=2)
    got = tt.step0(rnn)["pascanu"]
    text = tt.sentence({"pascanu": got})
    values = ", ".join(f"{p['gamma_norm']:.3g}" for p in got)
    assert f"Pascanu's bound gamma ||W_hh||_2 = {values} per step back in time in cell layers 0, 1" in text, text
