"""gradlab.bench.engine: the analytic FLOP count, and that its PyTorch step is the same computation as ours.
No test here asserts a time."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gradlab.bench import engine
from gradlab.bench.engine import OurStep, TorchStep, Workload, matmul_flops, torch_params
from gradlab.cli import app


def test_mlp_flops_equal_a_hand_count():
    # sizes 3 -> 4 -> 4 -> 1, batch 2: layer 0 forward + dW (no input gradient), the others forward + dW + da
    w = Workload("t", "mlp", input_size=3, hidden=4, batch=2, layers=2)
    by_hand = 2 * (2 * 2 * 3 * 4) + 3 * (2 * 2 * 4 * 4) + 3 * (2 * 2 * 4 * 1)
    assert matmul_flops(w) == by_hand == 336


@pytest.mark.parametrize("model, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_recurrent_flops_equal_a_hand_count(model, gates):
    T, N, D, H, O = 3, 2, 1, 2, 1
    G = gates * H  # rows of weight_ih / weight_hh
    w = Workload("t", model, input_size=D, hidden=H, batch=N, T=T, output_size=O)
    by_hand = (
        T * 2 * N * D * G  # input projection x_t W_ih^T
        + T * 2 * N * H * G  # recurrence h_(t-1) W_hh^T
        + T * 2 * N * G * H  # backward dL/dh_(t-1) = dz_t W_hh
        + 2 * G * T * N * D  # dW_ih = sum_t dz_t^T x_t
        + 2 * G * T * N * H  # dW_hh = sum_t dz_t^T h_(t-1)
        + 3 * 2 * N * H * O  # readout forward, dW_out, dL/dh_T
    )
    assert matmul_flops(w) == by_hand
    assert matmul_flops(w) == {"rnn": 216, "lstm": 792, "gru": 600}[model]


def test_stacked_and_ensemble_flops_equal_a_hand_count():
    T, N, D, H, O = 3, 2, 1, 2, 1
    one = Workload("t", "lstm", input_size=D, hidden=H, batch=N, T=T, output_size=O)
    two = Workload("t", "lstm", input_size=D, hidden=H, batch=N, T=T, output_size=O, layers=2)
    G = 4 * H
    upper = T * 2 * N * H * G * 2 + T * 2 * N * H * G * 2 + T * 2 * N * G * H  # projection + dW_ih, recurrence + dW_hh, dL/dinput
    assert matmul_flops(two) - matmul_flops(one) == upper + T * 2 * N * G * H  # and its backward dL/dh_(t-1)
    mlp = Workload("t", "mlp", input_size=3, hidden=4, batch=2, layers=2)
    assert matmul_flops(Workload("t", "mlp", input_size=3, hidden=4, batch=2, layers=2, ensemble=16)) == 16 * matmul_flops(mlp)


def test_the_benchmark_workloads_are_the_issues():
    w1, w2, w3, w4, w5, w6, w7, w8 = (engine.WORKLOADS[f"W{k}"] for k in range(1, 9))
    assert (w1.model, w1.layers, w1.hidden, w1.batch, w1.activation) == ("mlp", 20, 256, 128, "tanh")
    assert (w2.model, w2.input_size, w2.hidden, w2.T, w2.batch, w2.activation) == ("rnn", 2, 128, 100, 32, "tanh")
    assert (w3.model, w3.input_size, w3.hidden, w3.T, w3.batch) == ("lstm", 2, 128, 100, 32)
    assert (w4.model, w4.layers, w4.hidden, w4.batch, w4.activation) == ("mlp", 8, 2048, 512, "relu")
    assert (w5.model, w5.input_size, w5.hidden, w5.T, w5.batch) == ("gru", 2, 128, 100, 32)
    assert (w6.model, w6.layers, w6.input_size, w6.hidden, w6.T, w6.batch) == ("lstm", 2, 2, 128, 100, 32)
    assert w7 == engine.replace(w1, name="W7", norm="batch")
    assert (w8.model, w8.input_size, w8.layers, w8.hidden, w8.output_size, w8.batch, w8.activation, w8.ensemble) == (
        "mlp", 1, 5, 8, 1, 32, "relu", 16)  # fmt: skip


def test_our_step_trains_and_records_the_trace_when_asked():
    w = Workload("t", "lstm", input_size=2, hidden=3, batch=4, T=5)
    step = OurStep(w, "float64")
    before = {k: v.copy() for k, v in step.model.params.items()}
    loss = step(trace=True)
    assert np.isfinite(loss)
    assert any(not np.array_equal(before[k], step.model.params[k]) for k in before)
    assert np.sqrt(sum(float(np.vdot(g, g)) for g in step.grads.values())) <= engine.MAX_NORM * (1 + 1e-12)


TINY = [
    Workload("t", "mlp", input_size=5, hidden=6, batch=4, activation="tanh", layers=3),
    Workload("t", "mlp", input_size=5, hidden=6, batch=4, activation="relu", layers=2, init="he_uniform"),
    Workload("t", "mlp", input_size=5, hidden=6, batch=4, activation="tanh", layers=3, norm="batch"),
    Workload("t", "rnn", input_size=2, hidden=5, batch=3, T=6),
    Workload("t", "gru", input_size=2, hidden=5, batch=3, T=6),
    Workload("t", "lstm", input_size=2, hidden=5, batch=3, T=6, layers=2),
    Workload("t", "lstm", input_size=2, hidden=5, batch=3, T=6),
]


@pytest.mark.torch
@pytest.mark.parametrize("w", TINY, ids=lambda w: f"{w.model}-{w.activation}-{w.layers}-{w.norm}")
@pytest.mark.parametrize("variant", ["fused", "cell"])
def test_torch_step_is_the_same_step_as_ours(w, variant):
    pytest.importorskip("torch")
    if variant == "cell" and (w.model == "mlp" or w.layers > 1):
        pytest.skip("the cell loop is of one recurrent layer")
    ours, theirs = OurStep(w, "float64", seed=3), TorchStep(w, "float64", seed=3, variant=variant)
    p0 = torch_params(theirs)
    for name, p in ours.model.params.items():
        np.testing.assert_array_equal(p0[name], p, err_msg=f"initial {name}")
    loss_ours, loss_torch = ours(), theirs()
    assert loss_ours == pytest.approx(loss_torch, rel=1e-12)
    # after clip_norm / clip_grad_norm_; the latter scales by c / (norm + 1e-6), not c / norm, so a clipped
    # gradient differs by up to 1e-6 / norm, the same factor for every parameter
    grads = torch_params(theirs, grad=True)
    ratios = []
    for name, g in ours.grads.items():
        if max(np.linalg.norm(g), np.linalg.norm(grads[name])) < 1e-12:
            continue  # exactly 0 up to rounding: a dense bias before batch norm (its batch mean subtracts it)
        err = np.linalg.norm(g - grads[name]) / max(np.linalg.norm(grads[name]), 1e-300)
        assert err < 1e-6, f"{name}: relative error {err:.2e}"
        ratios.append(np.vdot(g, grads[name]) / np.vdot(grads[name], grads[name]))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-10)  # one common scale: the same direction
    after = torch_params(theirs)
    for name, p in ours.model.params.items():
        np.testing.assert_allclose(p, after[name], rtol=1e-9, atol=1e-6 * engine.LR, err_msg=f"updated {name}")


def test_lstm_memory_peak_is_at_least_the_cache():
    peak, cache = engine.lstm_memory(T=20)
    assert cache == sum(  # xs, hs, cs, gates, tanh_c of N=32, H=128, D=2 in float64
        8 * n for n in (20 * 32 * 2, 21 * 32 * 128, 21 * 32 * 128, 20 * 32 * 512, 20 * 32 * 128)
    )
    assert peak >= cache


@pytest.mark.torch
def test_cli_bench_prints_the_table_and_the_targets():
    """The PyTorch targets are measured when torch is installed, and said to be unmeasured when not."""
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "W2", "--dtype", "float64", "--no-probes"])
    assert result.exit_code == 0, result.output
    assert "W2   float64" in result.output
    assert "targets:" in result.output and "trace cost <= 15%" in result.output
    assert "machine:" in result.output.splitlines()[0]
    measured = "W2 <= 1.0x fused nn.RNN" in result.output
    unmeasured = "(PyTorch targets not measured: torch is not importable)" in result.output
    assert (measured, unmeasured) == ((True, False) if engine.torch_available() else (False, True)), result.output


def test_cli_bench_rejects_an_unknown_workload():
    result = CliRunner().invoke(app, ["bench", "--only", "W9"])
    assert result.exit_code == 2


@pytest.mark.parametrize("ratio, frac, met", [(1.2, 0.7, False), (0.9, 0.6, True)])
def test_w1_floor_is_the_ratio_its_products_would_have_at_the_matmul_peak(ratio, frac, met):
    r = engine.Result("W1", "float32", 10.0, 70.0, frac, 0.0, {"fused": 10.0 / ratio}, {"fused": ratio})
    rows = {label: (value, ok) for label, value, ok in engine.targets([r], None)}
    value, ok = rows["W1 floor <= 0.6x PyTorch"]
    assert value == f"32: {ratio * frac:.2f}x" and ok is met, f"floor row {value!r}, met {ok}; expected {ratio * frac:.2f}x, {met}"
    assert rows["W1 <= 0.6x PyTorch"] == (f"32: {ratio:.2f}x", False), rows["W1 <= 0.6x PyTorch"]
