"""The seeds' worked examples are golden tests (../shared/seeds/).

Exact values are recomputed here from the seeds' formulas with plain Python / NumPy, independently
of the engine, and the engine must match them to 1e-9; the published figures are rounded to 6
decimals, so they are checked to 5e-7 (half a unit in the 6th decimal).
"""

import math

import numpy as np
import pytest
from conftest import assert_close

from gradlab.nn import MLP, losses, optim

# Seed 001, "Understanding Backpropagation": one sigmoid neuron, C = 1/2 (y - a)^2, learning rate 1.
W0, B0, X, Y = [2.0, -3.0], -3.0, [-1.0, -2.0], 1.0
PUBLISHED = {  # as printed in seeds/README.md, 6 decimals
    "z": 1.0,
    "a": 0.731059,
    "C": 0.036165,
    "delta": -0.052877,
    "dC/dW": [0.052877, 0.105754],
    "dC/db": -0.052877,
    "W after": [1.947123, -3.105754],
    "b after": -2.947123,
    "a after": 0.788726,
}


def exact_001():
    """Seed 001's example by hand, in floats: the numbers the rounded figures stand for."""
    z = W0[0] * X[0] + W0[1] * X[1] + B0
    a = 1.0 / (1.0 + math.exp(-z))
    C = 0.5 * (Y - a) ** 2
    delta = (a - Y) * a * (1.0 - a)  # dC/da * da/dz
    dW = [delta * X[0], delta * X[1]]
    db = delta
    W1 = [W0[0] - dW[0], W0[1] - dW[1]]
    b1 = B0 - db
    a1 = 1.0 / (1.0 + math.exp(-(W1[0] * X[0] + W1[1] * X[1] + b1)))
    return {
        "z": z,
        "a": a,
        "C": C,
        "delta": delta,
        "dC/dW": dW,
        "dC/db": db,
        "W after": W1,
        "b after": b1,
        "a after": a1,
    }


def engine_001():
    """The same example run through gradlab: MLP([2, 1], sigmoid output), mse, SGD(lr=1)."""
    model = MLP([2, 1], output_activation="sigmoid")
    model.params["layers.0.weight"][...] = [W0]
    model.params["layers.0.bias"][...] = [B0]
    x, y = np.array([X]), np.array([[Y]])
    a, cache = model.forward(x, trace=True)
    C, da = losses.mse(a, y)
    grads = model.backward(da, cache)
    got = {
        "z": grads.trace.z[0][0, 0],
        "a": a[0, 0],
        "C": C,
        "delta": grads.trace.delta[0][0, 0],
        "dC/dW": grads.params["layers.0.weight"][0].copy(),
        "dC/db": grads.params["layers.0.bias"][0],
    }
    optim.SGD(model.params, lr=1.0).step(grads.params)
    got["W after"] = model.params["layers.0.weight"][0].copy()
    got["b after"] = model.params["layers.0.bias"][0]
    got["a after"] = model.forward(x)[0][0, 0]
    return got


@pytest.fixture(scope="module")
def seed001():
    return engine_001(), exact_001()


@pytest.mark.parametrize("quantity", list(PUBLISHED))
def test_seed001_engine_equals_exact_values(seed001, quantity):
    got, exact = seed001
    assert_close(got[quantity], exact[quantity], f"seed 001 {quantity}", atol=1e-9)


@pytest.mark.parametrize("quantity", list(PUBLISHED))
def test_seed001_engine_equals_published_figures(seed001, quantity):
    got, _ = seed001
    assert_close(got[quantity], PUBLISHED[quantity], f"seed 001 {quantity} vs published", atol=5e-7)


def test_seed001_exact_values_round_to_published_figures():
    """The independent computation itself reproduces the seed (guards the test's own arithmetic)."""
    exact = exact_001()
    for q, published in PUBLISHED.items():
        assert_close(exact[q], published, f"hand-computed {q}", atol=5e-7)


# Seed 002: two-layer sigmoid MLP, L = 1/2 ||a2 - y||^2, column vectors.
def seed002_formulas(W1, b1, W2, b2, x, y):
    """The seed's forward and matrix formulas for one example (x, y column vectors)."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))
    z1 = W1 @ x + b1
    a1 = sig(z1)
    z2 = W2 @ a1 + b2
    a2 = sig(z2)
    dz2 = (a2 - y) * a2 * (1 - a2)  # dL/dz2 = (a2 - y) * a2 * (1 - a2)
    dW2 = dz2 @ a1.T  # dL/dW2 = dL/dz2 a1^T
    da1 = W2.T @ dz2  # dL/da1 = W2^T dL/dz2
    dz1 = da1 * a1 * (1 - a1)  # dL/dz1 = dL/da1 * a1 (1 - a1)
    dW1 = dz1 @ x.T  # dL/dW1 = dL/dz1 x^T
    return {"loss": 0.5 * float(((a2 - y) ** 2).sum()), "dW1": dW1, "db1": dz1[:, 0], "dW2": dW2, "db2": dz2[:, 0],
            "dz1": dz1[:, 0], "dz2": dz2[:, 0]}  # fmt: skip


@pytest.mark.parametrize("n,h,m", [(3, 4, 2), (2, 1, 1), (5, 3, 4)])
def test_seed002_single_example_gradients_equal_matrix_formulas(n, h, m):
    rng = np.random.default_rng(n * 100 + h * 10 + m)
    model = MLP([n, h, m], activation="sigmoid", output_activation="sigmoid", rng=rng)
    W1, W2 = rng.normal(size=(h, n)), rng.normal(size=(m, h))
    b1, b2 = rng.normal(size=(h, 1)), rng.normal(size=(m, 1))
    model.params.update({"layers.0.weight": W1.copy(), "layers.0.bias": b1[:, 0].copy(),
                         "layers.1.weight": W2.copy(), "layers.1.bias": b2[:, 0].copy()})  # fmt: skip
    x, y = rng.normal(size=(n, 1)), rng.uniform(size=(m, 1))
    want = seed002_formulas(W1, b1, W2, b2, x, y)
    a2, cache = model.forward(x.T, trace=True)
    loss, da2 = losses.mse(a2, y.T)
    grads = model.backward(da2, cache)
    assert_close(loss, want["loss"], "loss", rtol=1e-12)
    for name, key in [
        ("layers.0.weight", "dW1"),
        ("layers.0.bias", "db1"),
        ("layers.1.weight", "dW2"),
        ("layers.1.bias", "db2"),
    ]:
        assert_close(grads.params[name], want[key], f"({n},{h},{m}) {name} vs seed 002 {key}", rtol=1e-12, atol=1e-15)
    assert_close(grads.trace.delta[1][0], want["dz2"], "trace delta[1] vs dL/dz2", rtol=1e-12, atol=1e-15)
    assert_close(grads.trace.delta[0][0], want["dz1"], "trace delta[0] vs dL/dz1", rtol=1e-12, atol=1e-15)


def test_seed002_batch_gradient_is_the_mean_of_the_per_example_formulas():
    """mse averages over the batch, so the batch gradient is the mean of the seed's per-example ones."""
    rng = np.random.default_rng(2)
    n, h, m, N = 3, 4, 2, 7
    model = MLP([n, h, m], activation="sigmoid", output_activation="sigmoid", rng=rng)
    p = {k: v + rng.normal(scale=0.3, size=v.shape) for k, v in model.params.items()}
    model.params.update(p)
    X, Y = rng.normal(size=(N, n)), rng.uniform(size=(N, m))
    per = [seed002_formulas(p["layers.0.weight"], p["layers.0.bias"][:, None], p["layers.1.weight"],
                            p["layers.1.bias"][:, None], X[i][:, None], Y[i][:, None]) for i in range(N)]  # fmt: skip
    a2, cache = model.forward(X)
    loss, da2 = losses.mse(a2, Y)
    grads = model.backward(da2, cache)
    assert_close(loss, np.mean([q["loss"] for q in per]), "batch loss", rtol=1e-12)
    for name, key in [
        ("layers.0.weight", "dW1"),
        ("layers.0.bias", "db1"),
        ("layers.1.weight", "dW2"),
        ("layers.1.bias", "db2"),
    ]:
        assert_close(
            grads.params[name], np.mean([q[key] for q in per], axis=0), f"batch {name}", rtol=1e-12, atol=1e-15
        )


# Seed 000: C0 = sum_j (a_j - y_j)^2, dC0/da_j = 2 (a_j - y_j).
@pytest.mark.parametrize("size", [1, 3, 6])
def test_seed000_sum_squares_value_and_derivative(size):
    rng = np.random.default_rng(size)
    a, y = rng.normal(size=(1, size)), rng.normal(size=(1, size))
    C0, dC0 = losses.sum_squares(a, y)
    assert_close(C0, float(((a - y) ** 2).sum()), f"C0 (size {size})", rtol=1e-13)
    assert_close(dC0, 2 * (a - y), f"dC0/da (size {size})", rtol=1e-13)
    # and twice the 1/2 convention of seeds 001/002
    assert_close(C0, 2 * losses.mse(a, y)[0], "C0 vs 2 * mse", rtol=1e-13)


def test_seed000_layer_L_minus_1_derivative():
    """dC0/da_k^(L-1) = sum_j w_jk^(L) g'(z_j^(L)) 2 (a_j^(L) - y_j), written out with index loops."""
    rng = np.random.default_rng(0)
    model = MLP([3, 4, 2], activation="sigmoid", output_activation="tanh", rng=rng)
    x, y = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    out, cache = model.forward(x, trace=True)
    _, dC = losses.sum_squares(out, y)
    grads = model.backward(dC, cache)
    W = model.params["layers.1.weight"]
    aL, a_prev = grads.trace.a[1][0], grads.trace.a[0][0]
    want = np.zeros(4)
    for k in range(4):
        for j in range(2):
            want[k] += W[j, k] * (1 - aL[j] ** 2) * 2 * (aL[j] - y[0, j])
    # trace.delta[0] = dC0/dz^(L-1) = dC0/da^(L-1) * g'(z^(L-1)), g = sigmoid
    assert_close(grads.trace.delta[0][0], want * a_prev * (1 - a_prev), "delta^(L-1)", rtol=1e-12)
    # dC0/dw_12^(L) = 2 (a_1 - y_1) g'(z_1) a_2^(L-1)   (0-based indices 0 and 1 here)
    assert_close(grads.params["layers.1.weight"][0, 1], 2 * (aL[0] - y[0, 0]) * (1 - aL[0] ** 2) * a_prev[1],
                 "dC0/dw_12^(L)", rtol=1e-12)  # fmt: skip
