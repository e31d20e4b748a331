"""gradlab.torch.watch on small torch training loops (skipped without torch), every table column against
values the tests compute from torch on their own: norms from .grad, dL/d(output) by retain_grad, the probe's
activations from forward hooks, the LSTM's dL/dh_t and dL/dc_t from a cell loop written out here with
retain_grad on every h_t and c_t; the same weights in gradlab's engine give the same per-layer rows; scaled
(AMP) gradients are reported unscaled; with accumulation the step is measured at the optimizer step; a
saved folder is read by gradlab.load, `gradlab show` and `gradlab report`; bad inputs are one-line errors.

Models are float64 (TOL relative, 1e-10); a float32 run is checked at 1e-5.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
nn = torch.nn

import gradlab  # noqa: E402
from gradlab.torch import watch  # noqa: E402

TOL = 1e-10
N, D, H, STEPS, EVERY = 16, 4, 8, 5, 2
LOGGED = (0, 2, 4)  # should_log with every=2, steps=5


# ---------------------------------------------------------------- helpers


def close(ours, ref, name, tol=TOL):
    """Relative difference below tol (NaN equals NaN); the message names the value and both numbers."""
    a, e = float(ours), float(ref)
    if math.isnan(a) and math.isnan(e):
        return
    assert abs(a - e) <= tol * max(abs(a), abs(e), 1e-300), f"{name}: watcher {a!r}, torch {e!r}"


def gnorm(tensors) -> float:
    """||.|| over tensors together, float64."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def example_mean(g: torch.Tensor) -> float:
    """Batch mean of per-example norms (batch axis 0)."""
    return float(g.detach().double().reshape(g.shape[0], -1).norm(dim=1).mean())


def mlp(seed=0, dtype=torch.float64, act=nn.ReLU) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(D, H), act(), nn.Linear(H, H), act(), nn.Linear(H, 1)).to(dtype)
    with torch.no_grad():
        model[0].bias[:2] = -50.0  # two units of layer 0 dead on every input: dead_frac 2/8
    return model


def batches(steps, n=N, seed=1, dtype=torch.float64, shape=(D,)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=g, dtype=dtype), torch.randn(n, 1, generator=g, dtype=dtype)) for _ in range(steps)]


def watched(model, steps=STEPS, accumulate=1, call=None, name="torch"):
    """The watcher of `steps` SGD steps (lr 0.1) of the mean squared error on batches(steps), each step's batch in
    `accumulate` micro-batches; call(model, x) is the forward (default model(x))."""
    call = call or (lambda m, x: m(x))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, every=EVERY, optimizer=opt, name=name) as w:
        for x, y in batches(steps):
            opt.zero_grad()
            for part in range(accumulate):
                ((call(model, x[part::accumulate]) - y[part::accumulate]) ** 2).mean().backward()
            opt.step()
    return w


def probe_reference(model: nn.Sequential, probe: torch.Tensor) -> list[dict]:
    """Per Linear: mean, std, dead mask and saturated fraction of the following activation's output (the
    Linear's own for the last), on the probe batch, by forward hooks."""
    outs = {}
    hooks = [m.register_forward_hook(lambda m, a, o, k=k: outs.__setitem__(k, o.detach().double())) for k, m in enumerate(model)]
    with torch.no_grad():
        model(probe)
    for h in hooks:
        h.remove()
    rows = []
    for k, m in enumerate(model):
        if not isinstance(m, nn.Linear):
            continue
        follows = k + 1 < len(model) and not isinstance(model[k + 1], nn.Linear)
        a = outs[k + 1] if follows else outs[k]
        act = type(model[k + 1]) if follows else None
        if act is nn.ReLU:
            sat = float((a <= 0).double().mean())
        elif act is nn.Tanh:
            sat = float((1 - a**2 < 0.01).double().mean())
        else:
            sat = 0.0
        rows.append({"act_mean": float(a.mean()), "act_std": float(a.std(unbiased=False)), "dead": (a == 0).all(dim=0).numpy(),
                     "saturated_frac": sat})  # fmt: skip
    return rows


def train_mlp(model, data, probe, clip=0.5, accumulate=1, scale=None, every=EVERY, watcher_scaler=None):
    """Train with the watcher and record the reference values from torch itself at every step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    refs = []
    with watch(model, every=every, probe=probe, optimizer=opt, scaler=watcher_scaler, steps=len(data) // accumulate) as w:
        for s in range(len(data) // accumulate):
            ref = {"probe": probe_reference(model, probe), "before": [l.weight.detach().clone() for l in linears]}
            outs = []
            def keep(m, a, o):
                if o.requires_grad:  # not the watcher's probe forward
                    o.retain_grad()
                    outs.append((m, o))

            hooks = [l.register_forward_hook(keep) for l in linears]
            opt.zero_grad()
            losses = []
            for x, y in data[s * accumulate : (s + 1) * accumulate]:
                loss = ((model(x) - y) ** 2).mean() / accumulate
                (loss * scale if scale else loss).backward()
                losses.append(float(loss.detach()))
            for h in hooks:
                h.remove()
            if scale:
                for p in model.parameters():
                    p.grad /= scale
            ref["grad_norm"] = gnorm(p.grad for p in model.parameters())
            ref["w"] = [gnorm([l.weight.grad]) for l in linears]
            ref["b"] = [gnorm([l.bias.grad]) for l in linears]
            ref["delta"] = [float(torch.cat([o.grad.double().norm(dim=1) for m, o in outs if m is l]).mean()) / (scale or 1) for l in linears]
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            ref["clipped"] = gnorm(p.grad for p in model.parameters())
            opt.step()
            ref["update"] = [gnorm([l.weight - b]) / gnorm([l.weight]) for l, b in zip(linears, ref["before"])]
            ref["loss"] = losses[-1]
            w.step(losses[-1])
            refs.append(ref)
    return w, refs


# ---------------------------------------------------------------- the MLP


@pytest.fixture(scope="module")
def mlp_run():
    model = mlp()
    data = batches(STEPS)
    probe = torch.randn(64, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return train_mlp(model, data, probe)


def test_mlp_steps_table_matches_torch(mlp_run):
    w, refs = mlp_run
    steps = w.tables()["steps"]
    assert steps["step"].tolist() == list(range(STEPS))
    for s, ref in enumerate(refs):
        row = steps.iloc[s]
        close(row["loss"], ref["loss"], f"step {s} loss")
        close(row["grad_norm"], ref["grad_norm"], f"step {s} grad_norm (before clipping)")
        close(row["grad_norm_clipped"], ref["clipped"], f"step {s} grad_norm_clipped")
        assert bool(row["clipped"]) == (ref["clipped"] < ref["grad_norm"]), f"step {s} clipped"
        close(row["lr"], 0.1, f"step {s} lr")
    assert steps["collapsed"].isna().tolist() == [s not in LOGGED for s in range(STEPS)], "collapsed is NA off the logged steps"
    assert not steps["collapsed"].dropna().any(), "the MLP is not constant on the probe batch"


def test_mlp_layers_table_matches_torch(mlp_run):
    w, refs = mlp_run
    layers = w.tables()["layers"]
    assert sorted(set(layers["step"])) == list(LOGGED)
    initial = [p["dead"] for p in refs[0]["probe"]]
    for s in LOGGED:
        ref, rows = refs[s], layers[layers["step"] == s].set_index("layer")
        assert rows.index.tolist() == [0, 1, 2], f"step {s}: layers {rows.index.tolist()}"
        for l in range(3):
            r, p = rows.loc[l], ref["probe"][l]
            close(r["weight_grad_norm"], ref["w"][l], f"step {s} layer {l} weight_grad_norm")
            close(r["bias_grad_norm"], ref["b"][l], f"step {s} layer {l} bias_grad_norm")
            close(r["delta_norm"], ref["delta"][l], f"step {s} layer {l} delta_norm")
            close(r["update_ratio"], ref["update"][l], f"step {s} layer {l} update_ratio")
            close(r["act_mean"], p["act_mean"], f"step {s} layer {l} act_mean")
            close(r["act_std"], p["act_std"], f"step {s} layer {l} act_std")
            close(r["saturated_frac"], p["saturated_frac"], f"step {s} layer {l} saturated_frac")
            close(r["dead_frac"], p["dead"].mean(), f"step {s} layer {l} dead_frac")
            close(r["born_dead_frac"], (p["dead"] & initial[l]).mean(), f"step {s} layer {l} born_dead_frac")
            close(r["died_frac"], (p["dead"] & ~initial[l]).mean(), f"step {s} layer {l} died_frac")
    assert layers.loc[layers["layer"] == 0, "dead_frac"].min() >= 2 / H, "the two units with bias -50 are dead"


def test_mlp_same_rows_as_gradlabs_engine():
    """The same weights and batch in gradlab's MLP (load_torch): the same per-layer rows (probe = the batch)."""
    from gradlab.nn import MLP
    from gradlab.nn.losses import mse
    from gradlab.probes import dead_masks, layer_stats

    model = mlp(seed=3)
    x, y = batches(1, seed=4)[0]
    ours = MLP([D, H, H, 1], "relu", dtype="float64", rng=np.random.default_rng(0))
    ours.load_torch(model.state_dict())
    out, cache = ours.forward(x.numpy(), trace=True)
    _, dout = mse(out, y.numpy())
    grads = ours.backward(dout, cache, input_grad=False)
    expected = layer_stats(ours, grads)
    masks, _ = dead_masks(ours, x.numpy())

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with watch(model, every=1, probe=x, optimizer=opt) as w:
        opt.zero_grad()
        model(x).backward(torch.from_numpy(dout))  # the engine's dL/dy
        opt.step()
        w.step()
    rows = w.tables()["layers"]
    for col in ("weight_grad_norm", "bias_grad_norm", "delta_norm", "da_norm", "act_mean", "act_std", "saturated_frac"):
        for l in range(3):
            close(rows[col].iloc[l], expected[col][l], f"layer {l} {col} against gradlab's engine")
    for l in range(3):
        close(rows["dead_frac"].iloc[l], masks[l].mean(), f"layer {l} dead_frac against gradlab's dead_masks")


def test_float32_model_within_float32_precision():
    model = mlp(dtype=torch.float32)
    data = batches(STEPS, dtype=torch.float32)
    probe = data[0][0]
    w, refs = train_mlp(model, data, probe)
    steps, layers = w.tables()["steps"], w.tables()["layers"]
    for s, ref in enumerate(refs):
        close(steps["grad_norm"].iloc[s], ref["grad_norm"], f"float32 step {s} grad_norm", 1e-5)
    for l in range(3):
        close(layers["delta_norm"].iloc[l], refs[0]["delta"][l], f"float32 layer {l} delta_norm", 1e-5)
    assert w.record()["dtype"] == "float32"


def test_bfloat16_model_is_measured_in_float32():
    """A model whose parameters are bfloat16: its gradient norms (grad_norm, the rows' weight and bias norms, the
    update ratio) are taken in float32 from the bfloat16 .grad, within 1e-6 of the float64 norms of the same
    .grad (rounded to bfloat16's 8 bits they were 1e-3 off)."""
    model = mlp(dtype=torch.bfloat16)
    data = batches(STEPS, dtype=torch.bfloat16)
    w, refs = train_mlp(model, data, data[0][0])
    steps, layers = w.tables()["steps"], w.tables()["layers"]
    for s, ref in enumerate(refs):
        close(steps["grad_norm"].iloc[s], ref["grad_norm"], f"bfloat16 step {s} grad_norm", 1e-6)
        close(steps["grad_norm_clipped"].iloc[s], ref["clipped"], f"bfloat16 step {s} grad_norm_clipped", 1e-6)
    for s in LOGGED:
        rows, ref = layers[layers["step"] == s].set_index("layer"), refs[s]
        for l in range(3):
            close(rows.loc[l, "weight_grad_norm"], ref["w"][l], f"bfloat16 step {s} layer {l} weight_grad_norm", 1e-6)
            close(rows.loc[l, "bias_grad_norm"], ref["b"][l], f"bfloat16 step {s} layer {l} bias_grad_norm", 1e-6)
            close(rows.loc[l, "delta_norm"], ref["delta"][l], f"bfloat16 step {s} layer {l} delta_norm", 1e-6)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_autocast_half_precision_is_measured_as_the_model_runs(half):
    """Under torch.autocast (on the CPU: the Linears compute and return bfloat16 or float16 outputs) the loop
    trains on (NumPy has no bfloat16) and the columns equal torch's own under the same autocast: the probe's
    activations, the model's half-precision outputs (1e-12); the output-gradient norms, taken in float32, not
    rounded to the gradient's 8 or 11 bits (1e-6); the parameters' float32 gradients (1e-5)."""
    model = mlp(dtype=torch.float32)
    data = batches(STEPS, dtype=torch.float32)
    with torch.autocast("cpu", dtype=half):
        w, refs = train_mlp(model, data, data[0][0])
    layers = w.tables()["layers"]
    for s in LOGGED:
        rows, ref = layers[layers["step"] == s].set_index("layer"), refs[s]
        for l in range(3):
            r, p, what = rows.loc[l], ref["probe"][l], f"{half} step {s} layer {l}"
            close(r["act_mean"], p["act_mean"], f"{what} act_mean", 1e-12)
            close(r["act_std"], p["act_std"], f"{what} act_std", 1e-12)
            close(r["dead_frac"], p["dead"].mean(), f"{what} dead_frac")
            close(r["delta_norm"], ref["delta"][l], f"{what} delta_norm", 1e-6)
            close(r["weight_grad_norm"], ref["w"][l], f"{what} weight_grad_norm", 1e-5)


# ---------------------------------------------------------------- scaled gradients and accumulation


class HandScaler:
    """The part of torch.amp.GradScaler the watcher reads: a fixed scale S, applied and removed by hand."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self.scale


def test_scaled_gradients_are_reported_unscaled():
    S = 2.0**12
    data = batches(STEPS)
    probe = data[0][0]
    plain, _ = train_mlp(mlp(), data, probe)
    scaled, refs = train_mlp(mlp(), data, probe, scale=S, watcher_scaler=HandScaler(S))
    a, b = plain.tables(), scaled.tables()
    for col in ("grad_norm", "grad_norm_clipped"):
        for s in range(STEPS):
            close(b["steps"][col].iloc[s], refs[s]["grad_norm" if col == "grad_norm" else "clipped"], f"scaled step {s} {col}")
            close(b["steps"][col].iloc[s], a["steps"][col].iloc[s], f"scaled vs unscaled step {s} {col}", 1e-9)
    for col in ("weight_grad_norm", "bias_grad_norm", "delta_norm", "da_norm"):
        for i in range(len(a["layers"])):
            close(b["layers"][col].iloc[i], a["layers"][col].iloc[i], f"scaled vs unscaled layers row {i} {col}", 1e-9)


def test_torch_grad_scaler_on_cpu():
    """torch.amp.GradScaler itself (enabled on the CPU, float32): scaled backward, unscale_, clip, step."""
    model = mlp(dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    seen = []
    with watch(model, every=1, optimizer=opt, scaler=scaler) as w:
        for x, y in batches(3, dtype=torch.float32):
            opt.zero_grad()
            S = scaler.get_scale()
            scaler.scale(((model(x) - y) ** 2).mean()).backward()
            before = gnorm(p.grad for p in model.parameters()) / S
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            seen.append((before, gnorm(p.grad for p in model.parameters())))
            scaler.step(opt)
            scaler.update()
            w.step()
    steps = w.tables()["steps"]
    for s, (before, after) in enumerate(seen):
        close(steps["grad_norm"].iloc[s], before, f"GradScaler step {s} grad_norm", 1e-5)
        close(steps["grad_norm_clipped"].iloc[s], after, f"GradScaler step {s} grad_norm_clipped", 1e-5)


def test_accumulation_is_measured_at_the_optimizer_step():
    k = 3
    data = batches(STEPS * k, n=6)
    probe = data[0][0]
    w, refs = train_mlp(mlp(), data, probe, accumulate=k)
    steps, layers = w.tables()["steps"], w.tables()["layers"]
    assert len(steps) == STEPS, f"{len(steps)} steps rows for {STEPS} optimizer steps of {k} micro-batches"
    for s, ref in enumerate(refs):
        close(steps["grad_norm"].iloc[s], ref["grad_norm"], f"accumulated step {s} grad_norm")
    for s in LOGGED:
        rows = layers[layers["step"] == s]
        for l in range(3):
            close(rows["weight_grad_norm"].iloc[l], refs[s]["w"][l], f"accumulated step {s} layer {l} weight_grad_norm")
            close(rows["delta_norm"].iloc[l], refs[s]["delta"][l], f"accumulated step {s} layer {l} delta_norm (all {k * 6} examples)")


# ---------------------------------------------------------------- the LSTM


class Net(nn.Module):
    def __init__(self, layers=2):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=layers, batch_first=True)
        self.readout = nn.Linear(5, 1)

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.readout(h[:, -1])


def cell_loop(lstm: nn.LSTM, x: torch.Tensor):
    """The LSTM written out step by step on detached copies of its weights, retain_grad on every h_t and
    c_t: per layer lists hs, cs (each (N, H) per t), gates (i, f, g, o) per t, and the top sequence."""
    inp, out = x, []
    for j in range(lstm.num_layers):
        W = {n: getattr(lstm, f"{n}_l{j}").detach().clone().requires_grad_(torch.is_grad_enabled()) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        h = torch.zeros(x.shape[0], lstm.hidden_size, dtype=x.dtype)
        c = torch.zeros_like(h)
        hs, cs, gates = [], [], []
        for t in range(x.shape[1]):
            z = inp[:, t] @ W["weight_ih"].T + h @ W["weight_hh"].T + W["bias_ih"] + W["bias_hh"]
            i, f, g, o = z.chunk(4, dim=1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            if h.requires_grad:
                h.retain_grad()
                c.retain_grad()
            hs.append(h)
            cs.append(c)
            gates.append((i, f, g, o))
        inp = torch.stack(hs, dim=1)
        out.append((hs, cs, gates))
    return inp, out


def test_lstm_tables_match_a_cell_loop():
    torch.manual_seed(0)
    model = Net().double()
    data = batches(3, n=6, shape=(7, 3))
    probe = torch.randn(20, 7, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    refs = []
    with watch(model, every=2, probe=probe, optimizer=opt, steps=3) as w:
        for x, y in data:
            # the reference: the cell loop on the batch (dL/dh_t, dL/dc_t) and on the probe (states, gates)
            xr = x.clone()
            top, layers = cell_loop(model.lstm, xr)
            readout = top[:, -1] @ model.readout.weight.detach().T + model.readout.bias.detach()
            ((readout - y) ** 2).mean().backward()
            with torch.no_grad():
                _, on_probe = cell_loop(model.lstm, probe)
            refs.append({"dh": [[example_mean(h.grad) for h in hs] for hs, _, _ in layers],
                         "dc": [[example_mean(c.grad) for c in cs] for _, cs, _ in layers],
                         "da": [float(torch.stack([h.grad for h in hs], 1).double().reshape(6, -1).norm(dim=1).mean()) for hs, _, _ in layers],
                         "probe": on_probe})  # fmt: skip
            opt.zero_grad()
            out = model(x)
            out.retain_grad()
            ((out - y) ** 2).mean().backward()
            refs[-1]["w"] = [gnorm([getattr(model.lstm, f"weight_ih_l{j}").grad, getattr(model.lstm, f"weight_hh_l{j}").grad]) for j in range(2)]
            refs[-1]["b"] = [gnorm([getattr(model.lstm, f"bias_ih_l{j}").grad]) for j in range(2)]
            refs[-1]["readout_delta"] = example_mean(out.grad)
            opt.step()
            w.step()
    t = w.tables()
    ts, layers = t["timesteps"], t["layers"]
    assert sorted(set(ts["step"])) == [0, 2] and sorted(set(layers["step"])) == [0, 2]
    for s in (0, 2):
        ref = refs[s]
        for j in range(2):
            got = ts[(ts["step"] == s) & (ts["layer"] == j)].sort_values("t")
            assert got["t"].tolist() == list(range(7)), f"step {s} cell layer {j}: t {got['t'].tolist()}"
            for k in range(7):
                close(got["dh_norm"].iloc[k], ref["dh"][j][k], f"step {s} layer {j} t {k} dh_norm")
                close(got["dc_norm"].iloc[k], ref["dc"][j][k], f"step {s} layer {j} t {k} dc_norm")
            row = layers[(layers["step"] == s) & (layers["layer"] == j)].iloc[0]
            close(row["weight_grad_norm"], ref["w"][j], f"step {s} cell layer {j} weight_grad_norm")
            close(row["bias_grad_norm"], ref["b"][j], f"step {s} cell layer {j} bias_grad_norm (merged bias)")
            close(row["da_norm"], ref["da"][j], f"step {s} cell layer {j} da_norm")
            hs, _, gates = ref["probe"][j]
            h = torch.stack(hs, 1).double()
            close(row["act_mean"], float(h.mean()), f"step {s} cell layer {j} act_mean")
            close(row["act_std"], float(h.std(unbiased=False)), f"step {s} cell layer {j} act_std")
            close(row["dead_frac"], float((h == 0).all(dim=1).all(dim=0).double().mean()), f"step {s} cell layer {j} dead_frac")
            sat = sum(int(((g * (1 - g) if n != 2 else 1 - g**2) < (0.0025 if n != 2 else 0.01)).sum())
                      for step_gates in gates for n, g in enumerate(step_gates))  # fmt: skip
            close(row["saturated_frac"], sat / (20 * 7 * 4 * 5), f"step {s} cell layer {j} saturated_frac")
        readout = layers[(layers["step"] == s) & (layers["layer"] == 2)].iloc[0]
        close(readout["delta_norm"], ref["readout_delta"], f"step {s} readout delta_norm")
    record = w.record()
    assert (record["model"], record["layers"], record["width"], record["T"]) == ("lstm", 2, 5, 7), record


# ---------------------------------------------------------------- the results folder and the CLI


def test_saved_folder_is_read_by_load_show_and_report(mlp_run, tmp_path):
    from typer.testing import CliRunner

    from gradlab.cli import app

    w, _ = mlp_run
    out = w.save(tmp_path / "mine")
    tables = gradlab.load(out)
    for name, frame in w.tables().items():
        got = tables[name].reset_index(drop=True)
        if not len(frame):  # the store keeps no columns of a table without rows
            assert not len(got), f"{name}: {len(got)} rows read back, none written"
            continue
        pd.testing.assert_frame_equal(got, frame.reset_index(drop=True), check_dtype=False, obj=f"{name} table read back")
    runs = tables["runs"]
    assert runs["run_id"].tolist() == ["torch"] and runs["model"].iloc[0] == "mlp" and runs["depth"].iloc[0] == 2
    assert runs["diagnosis"].iloc[0] in ("healthy", "vanishing", "exploding", "dying", "stalled"), runs["diagnosis"].iloc[0]
    runner = CliRunner()
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0 and "1 ok" in shown.output, shown.output
    reported = runner.invoke(app, ["report", str(out)])
    assert reported.exit_code == 0, reported.output
    html = (out / "report.html").read_text()
    assert runs["diagnosis_text"].iloc[0][:40] in html, "the run's diagnosis sentence is in the report"
    assert (out / "figures" / "gradient_by_layer.png").is_file(), reported.output


IMAGES_LOADED = """<script>addEventListener("load", () => { const im = [...document.images];
  const p = document.createElement("pre"); p.id = "check";
  p.textContent = `images=${im.length} loaded=${im.filter(i => i.complete && i.naturalWidth > 0).length}`;
  document.body.appendChild(p); });</script>"""


def test_report_of_a_watched_run_renders_in_chromium(mlp_run, tmp_path):
    """The report of a watched run in headless Chromium (found as tests/test_report.py finds it): every
    embedded figure loads."""
    import importlib.util
    import re
    from pathlib import Path

    from typer.testing import CliRunner

    from gradlab.cli import app

    spec = importlib.util.spec_from_file_location("_gradlab_test_report", Path(__file__).with_name("test_report.py"))
    test_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_report)
    binary = test_report.chromium()
    if binary is None:
        pytest.skip("no Chromium installed")
    w, _ = mlp_run
    out = w.save(tmp_path / "mine")
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    checked = tmp_path / "checked.html"
    checked.write_text((out / "report.html").read_text().replace("</body>", IMAGES_LOADED + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom"]  # fmt: skip
    run = subprocess.run([binary, *flags, checked.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'id="check">images=(\d+) loaded=(\d+)<', run.stdout)
    assert found, f"the check did not run: {run.stderr[-1000:]}"
    images, loaded = int(found.group(1)), int(found.group(2))
    assert images > 0 and loaded == images, f"the browser saw {images} images, {loaded} loaded"


def test_save_refuses_a_folder_that_is_not_gradlabs(mlp_run, tmp_path):
    from gradlab.sweep.store import StoreError

    w, _ = mlp_run
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a gradlab results folder"):
        w.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "nothing may be written there"


def test_csv_profile_is_the_layers_table(mlp_run, tmp_path):
    w, _ = mlp_run
    path = w.to_csv(tmp_path / "profile.csv")
    table = pd.read_csv(path, index_col="step")
    layers = w.tables()["layers"]
    assert list(table.columns) == ["0 0", "1 2", "2 4"], list(table.columns)  # layer index and module name
    for s in LOGGED:
        for l, col in enumerate(table.columns):
            close(table.loc[s, col], layers[(layers["step"] == s) & (layers["layer"] == l)]["delta_norm"].iloc[0], f"csv step {s} {col}")
    with pytest.raises(ValueError, match="column must be a layers-table column"):
        w.to_csv(tmp_path / "x.csv", column="nope")


def test_tensorboard_needs_tensorboard(mlp_run, tmp_path):
    import importlib.util

    w, _ = mlp_run
    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed: test_tensorboard_scalars_are_the_tables reads what it writes")
    with pytest.raises(RuntimeError, match="needs the tensorboard package"):
        w.to_tensorboard(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


def tensorboard_scalars(logdir) -> dict[str, dict[int, float]]:
    """Every scalar series under logdir (add_scalars' runs in subfolders, named "<tag> <folder>"), read back
    with tensorboard's own event reader: {series: {step: value}}."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    mux.Reload()
    series = {}
    for run, tags in mux.Runs().items():
        for tag in tags["scalars"]:
            series[f"{tag} {run}"] = {e.step: e.value for e in mux.Scalars(run, tag)}
    return series


def test_tensorboard_scalars_are_the_tables(mlp_run, tmp_path):
    """What to_tensorboard writes, read back with tensorboard: the steps table's scalars at every step and one
    series per layer of each profile column at the logged steps, each equal to its table's value (float32, as
    tensorboard stores them); no other series (no histogram, no per-parameter panel)."""
    pytest.importorskip("tensorboard")
    from gradlab.torch.export import PROFILE_COLUMNS, STEP_SCALARS

    w, _ = mlp_run
    tables, names = w.tables(), w.row_names()
    got = tensorboard_scalars(w.to_tensorboard(tmp_path / "tb"))
    want = {}
    for name in STEP_SCALARS:
        want[f"steps/{name} ."] = dict(zip(tables["steps"]["step"], tables["steps"][name]))
    layers = tables["layers"]
    for column in PROFILE_COLUMNS:
        for j, module in enumerate(names):
            rows = layers[layers["layer"] == j]
            want[f"layers/{column} layers_{column}_{j} {module}"] = dict(zip(rows["step"], rows[column]))
    want = {k: {int(s): float(v) for s, v in series.items() if not math.isnan(v)} for k, series in want.items()}
    want = {k: v for k, v in want.items() if v}
    assert sorted(got) == sorted(want), f"series written {sorted(got)}, expected {sorted(want)}"
    for key, series in want.items():
        assert sorted(got[key]) == sorted(series), f"{key}: steps {sorted(got[key])}, expected {sorted(series)}"
        for step, value in series.items():
            close(got[key][step], value, f"{key} step {step}", tol=1e-6)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_are_one_line_errors():
    model = mlp()
    with pytest.raises(ValueError, match="has no parameters"):
        watch(nn.ReLU())
    with pytest.raises(ValueError, match=r"probe of shape \(3, 5\) does not fit the model"):
        watch(model, probe=torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="every must be a positive integer"):
        watch(model, every=0)
    with pytest.raises(ValueError, match="name must be a folder name"):
        watch(model, name="a/b")
    with pytest.raises(ValueError, match="has no module named 'fc9'"):
        watch(model, modules=["fc9"])
    w = watch(model)
    with pytest.raises(RuntimeError, match="no backward pass ran"):
        w.step()
    w.close()
    with pytest.raises(RuntimeError, match="the watcher is closed"):
        w.step()
    assert not model._forward_hooks and not model._forward_pre_hooks, "close() left hooks on the model"
    for message in ("has no parameters", "does not fit", "closed"):
        assert "\n" not in message


def test_probe_of_another_shape_than_the_batch(tmp_path):
    model = mlp()
    w = watch(model)
    model(torch.randn(4, D, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"probe: examples of shape \(5,\), the training batch's are \(4,\)"):
        w._set_probe(torch.randn(2, 5, dtype=torch.float64))
    w.close()


def test_unsupported_module_is_named_and_skipped():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3)
            self.fc = nn.Linear(2 * (D - 2), 1)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x[:, None])).flatten(1))

    model = Conv().double()
    with pytest.warns(UserWarning, match=r"not watched \(unsupported\): conv \(Conv1d\)"):
        w = watch(model)
    assert w.row_names() == ["fc"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, D, dtype=torch.float64)
    with w:
        opt.zero_grad()
        model(x).sum().backward()
        total = gnorm(p.grad for p in model.parameters())
        opt.step()
        w.step()
    close(w.tables()["steps"]["grad_norm"].iloc[0], total, "grad_norm counts the unwatched conv's gradients")
    close(w.tables()["steps"]["grad_norm_clipped"].iloc[0], total, "grad_norm_clipped from .grad in step() without optimizer=")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = watch(Conv().double(), modules=["conv"])
    assert named.row_names() == ["conv", "fc"]
    named.close()


@pytest.mark.parametrize("slopes, activation, slope", [
    ((0.2, 0.2), "leaky_relu", 0.2),  # gradlab's leaky ReLU: its slope in the runs table, saturation measured
    ((0.2, 0.1), "mixed", None),  # two slopes: no one activation of the model
    ((1.5, 1.5), "leakyrelu", None),  # slopes outside gradlab's [0, 1]: an activation gradlab does not know
    ((-0.2, -0.2), "leakyrelu", None),
])  # fmt: skip
def test_leaky_relu_slopes_reach_the_runs_table(slopes, activation, slope):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, H), nn.LeakyReLU(slopes[0]), nn.Linear(H, H), nn.LeakyReLU(slopes[1]), nn.Linear(H, 1)).double()
    probe = torch.randn(32, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    w, refs = train_mlp(model, batches(STEPS), probe)
    record = w.record()
    default = gradlab.schema.FIELDS["model.slope"].default
    assert (record["activation"], record["leaky_slope"]) == (activation, default if slope is None else slope), record
    known = all(0 <= s <= 1 for s in slopes)
    layers = w.tables()["layers"].query("step == 0").sort_values("layer")
    for row, ref in zip(layers.itertuples(), refs[0]["probe"][:2]):
        close(row.act_mean, ref["act_mean"], f"slopes {slopes}: layer {row.layer} act_mean")
        assert (row.saturated_frac == 0.0) if known else math.isnan(row.saturated_frac), (slopes, row.layer, row.saturated_frac)


class FunctionalReLU(nn.Module):
    """An MLP whose forward applies F.relu: no activation module for the watcher to see."""

    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(D, H), nn.Linear(H, H)])
        self.out = nn.Linear(H, 1)

    def forward(self, x):
        for fc in self.fcs:
            x = torch.nn.functional.relu(fc(x))
        return self.out(x)


class HeMLP(nn.Module):
    """A ReLU MLP of its own class (no plain nn.Sequential stack), He-initialised with biases N(0, 0.05)."""

    def __init__(self, hidden=3):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(D if k == 0 else H, H) for k in range(hidden)])
        self.acts = nn.ModuleList([nn.ReLU() for _ in range(hidden)])
        self.out = nn.Linear(H, 1)
        with torch.no_grad():
            for lin in [*self.fcs, self.out]:
                nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
                lin.bias.normal_(0.0, math.sqrt(0.05))

    def forward(self, x):
        for fc, act in zip(self.fcs, self.acts):
            x = act(fc(x))
        return self.out(x)


class ResidualReLU(nn.Module):
    """A ReLU MLP whose hidden layers add their input back (x + relu(W x + b)): a sum that no hook sees."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(D, H)
        self.fcs = nn.ModuleList([nn.Linear(H, H) for _ in range(3)])
        self.acts = nn.ModuleList([nn.ReLU() for _ in range(3)])
        self.out = nn.Linear(H, 1)

    def forward(self, x):
        x = self.inp(x)
        for fc, act in zip(self.fcs, self.acts):
            x = x + act(fc(x))
        return self.out(x)


@pytest.mark.parametrize("build, activation, theory", [
    (FunctionalReLU, "unknown", False),  # its activation is applied where no hook sees it
    (ResidualReLU, "unknown", False),  # its ReLU modules are seen, the sums between them are not
    (lambda: HeMLP(3), "relu", True),  # a forward of its own that is seen to be a chain of its modules
    (lambda: nn.Sequential(nn.Linear(D, H), nn.Linear(H, H), nn.Linear(H, 1)), "identity", False),  # a deep linear net
    (lambda: nn.Sequential(nn.Sequential(nn.Linear(D, H), nn.Tanh()), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, 1)), "tanh", True),
])  # fmt: skip
def test_an_activation_the_watcher_cannot_see_is_unknown_not_identity(build, activation, theory):
    """A hidden row's activation is the module the forward calls after it only when the forward is seen to be a
    chain (each module's input the tensor the module before it returned); mean field and Lu's probability are
    given for such a chain of any class, and for no other model."""
    torch.manual_seed(0)
    model = build().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, every=EVERY, optimizer=opt) as w:
        for x, y in batches(STEPS):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            w.step(loss)
    record = w.record()
    assert record["activation"] == activation, record["activation"]
    assert ("Mean field" in record["diagnosis_text"]) == theory, record["diagnosis_text"]
    assert ("Lu et al." in record["diagnosis_text"]) == (activation == "relu"), record["diagnosis_text"]


class Scale(nn.Module):
    """A parameterless module of the user's: doubles its input."""

    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize("between, other", [
    ((), ""),  # the plain stack
    ((nn.Flatten(),), ""),  # a reshape leaves it plain
    ((nn.Dropout(0.2),), "dropout"),
    ((Scale(), nn.Dropout(0.2)), "dropout, scale"),
])  # fmt: skip
def test_modules_between_the_layers_are_named_and_no_plain_theory_is_drawn_over_them(between, other, tmp_path):
    """A module between a chain's layers that is none of a row, an activation or a reshape (a Dropout, a module of
    the user's) is named in the runs row's other_modules; over such a net neither the diagnosis nor
    gradient_by_layer gives mean field (a dropout scales the backward by 1/(1-p) per layer), while its
    activation is still known."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, H), nn.ReLU(), *between, nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 1)).double()
    w = watched(model)
    record = w.record()
    assert record["other_modules"] == other and record["activation"] == "relu", (record["other_modules"], record["activation"])
    assert ("Mean field" in record["diagnosis_text"]) == (other == ""), record["diagnosis_text"]
    from gradlab.plots import gradient_by_layer

    (drawn,) = gradient_by_layer.draw(gradlab.load(w.save(tmp_path / "res")))
    theory_lines = [ln for ax in drawn.fig.axes for ln in ax.get_lines() if (ln.get_gid() or "").startswith("theory:")]
    assert bool(theory_lines) == (other == ""), f"other_modules {other!r}: {len(theory_lines)} mean-field lines"


class TokenLSTM(nn.Module):
    """A language model's shape: token ids (N, T) -> an Embedding of size 6 -> an LSTM (batch_first or not) -> a
    Linear head at every step."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.emb, self.lstm, self.head = nn.Embedding(11, 6), nn.LSTM(6, 5, batch_first=batch_first), nn.Linear(5, 1)
        self.batch_first = batch_first

    def forward(self, tokens):
        x = self.emb(tokens if self.batch_first else tokens.T)
        out = self.head(self.lstm(x)[0])
        return out if self.batch_first else out.transpose(0, 1)


@pytest.mark.parametrize("build, data, input_size, T", [
    (lambda: TokenLSTM(True), lambda g: torch.randint(0, 11, (N, 9), generator=g), 6, 9),
    (lambda: TokenLSTM(False), lambda g: torch.randint(0, 11, (N, 9), generator=g), 6, 9),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, H), nn.ReLU(), nn.Linear(H, 1)),
     lambda g: torch.randn(N, 1, 3, 4, generator=g), 12, None),  # an image MLP: its input is 12 numbers, not 4
])  # fmt: skip
def test_the_runs_row_reads_the_input_size_and_length_off_the_model(build, data, input_size, T):
    """task.input_size is what the first layer reads (an LSTM after an Embedding: the embedding's size, not the
    token ids' last axis; a Linear after a Flatten: its in_features) and task.T the recurrent module's sequence
    length in either layout, as the timesteps table counts it."""
    torch.manual_seed(0)
    model = build()
    g = torch.Generator().manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Embedding is named as not watched
        with watch(model, every=EVERY) as w:
            for _ in range(3):
                x = data(g)
                out = model(x)
                (out**2).mean().backward()
                w.step()
    record = w.record()
    assert record["input_size"] == input_size, f"input_size {record['input_size']}, the model reads {input_size}"
    if T is not None:
        steps = w.tables()["timesteps"].groupby("step")["t"].nunique().tolist()
        assert record["T"] == T and set(steps) == {T}, f"T {record['T']}, the timesteps table's {steps}, the input's {T}"


class Recurrent(nn.Module):
    """A recurrent module (or two of them) and a Linear readout of the last step."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.cells, self.out = nn.ModuleList(modules), nn.Linear(modules[-1].hidden_size, 1)

    def forward(self, x):
        for m in self.cells:
            x = m(x)[0]
        return self.out(x[:, -1])


@pytest.mark.parametrize("modules, activation", [
    (lambda: [nn.RNN(3, 6, batch_first=True)], "tanh"),
    (lambda: [nn.RNN(3, 6, nonlinearity="relu", batch_first=True)], "relu"),
    (lambda: [nn.LSTM(3, 6, batch_first=True)], "tanh"),
    (lambda: [nn.GRU(3, 6, num_layers=2, batch_first=True)], "tanh"),
    (lambda: [nn.RNN(3, 6, nonlinearity="relu", batch_first=True), nn.RNN(6, 6, batch_first=True)], "mixed"),
], ids=["rnn tanh", "rnn relu", "lstm", "gru", "relu then tanh"])  # fmt: skip
def test_a_recurrent_models_activation_is_its_recurrences(modules, activation):
    """The runs row's activation of a recurrent model is its recurrence's nonlinearity, as gradlab's own rnn runs
    record theirs (a ReLU nn.RNN was recorded "identity": the readout has no following activation)."""
    torch.manual_seed(0)
    model = Recurrent(*modules())
    g = torch.Generator().manual_seed(1)
    with watch(model, every=EVERY) as w:
        for _ in range(2):
            (model(torch.randn(8, 5, 3, generator=g)) ** 2).mean().backward()
            w.step()
    record = w.record()
    assert record["activation"] == activation, f"activation {record['activation']!r}, the recurrence's {activation!r}"


@pytest.mark.parametrize("build, measured", [
    (lambda: HeMLP(3), lambda m: list(m.fcs)[1:]),  # the hidden-to-hidden Linears
    (lambda: HeMLP(1), lambda m: [*m.fcs, m.out]),  # none: every Linear
    (lambda: mlp(act=nn.Tanh), lambda m: [m[2]]),  # a plain stack: its mean field's own variances
])  # fmt: skip
def test_the_init_in_the_runs_table_is_measured_from_the_weights(build, measured):
    """Any feed-forward model's init is "mean_field" at the variances its weights have at step 0 (here He's
    sigma_w^2 = 2, not the 1/3 of torch's default a claimed "standard" would draw), computed here from a copy."""
    import copy

    from gradlab.plots._gradients import hidden_sigma

    torch.manual_seed(4)
    model = build().double()
    initial = copy.deepcopy(model)
    w = watched(model)
    linears = measured(initial)
    sw2 = np.mean([float((lin.weight.detach().double() ** 2).mean()) * lin.in_features for lin in linears])
    sb2 = np.mean([float((lin.bias.detach().double() ** 2).mean()) for lin in linears])
    record = w.record()
    assert record["init"] == "mean_field", record["init"]
    close(record["sigma_w2"], sw2, "runs table sigma_w2 (step 0's weights)", tol=1e-12)
    close(record["sigma_b2"], sb2, "runs table sigma_b2 (step 0's weights)", tol=1e-12)
    assert hidden_sigma(pd.Series(record)) == (record["sigma_w2"], record["sigma_b2"]), "the figures' sigmas"


@pytest.mark.parametrize("scheduled", [False, True])
def test_the_runs_row_lr_is_the_first_steps_and_a_scheduler_is_named(scheduled):
    """train.lr is the lr the first step took (not the last one a scheduler left), schedule "torch" when it
    changed over the run, and every step's lr is in the steps table as the optimizer had it."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if scheduled else None
    taken = []
    with watch(model, every=EVERY, optimizer=opt) as w:
        for x, y in batches(STEPS):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            taken.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                sched.step()
    record = w.record()
    assert record["lr"] == taken[0] == 0.1, (record["lr"], taken)
    assert record["schedule"] == ("torch" if scheduled else "constant"), record["schedule"]
    assert w.tables()["steps"]["lr"].tolist() == taken, (w.tables()["steps"]["lr"].tolist(), taken)


class OutputFirst(nn.Module):
    """A tanh MLP of its own class that registers its output layer before the layers its forward calls first."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(H, 1)
        self.body = nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh())

    def forward(self, x):
        return self.out(self.body(x))


def test_rows_are_in_forward_order_whatever_order_the_modules_were_registered_in():
    """Layer 0 is nearest the input, the last row the output layer, as in the nn.Sequential of the same modules
    (whose tables and runs row the watched model must give, column by column)."""
    import copy

    torch.manual_seed(5)
    own = OutputFirst().double()
    seq = nn.Sequential(*copy.deepcopy(own.body), copy.deepcopy(own.out))
    watchers = [watched(model, name="run") for model in (own, seq)]
    assert watchers[0].row_names() == ["body.0", "body.2", "body.4", "out"], watchers[0].row_names()
    got, want = (w.tables()["layers"] for w in watchers)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    a, b = (w.record() for w in watchers)
    for key in ("activation", "output_activation", "depth", "width", "init", "sigma_w2", "sigma_b2", "diagnosis_text"):
        assert a[key] == b[key], f"{key}: own class {a[key]!r}, nn.Sequential {b[key]!r}"


class SharedReLU(nn.Module):
    """A ReLU MLP that calls one nn.ReLU after every hidden layer, as many tutorials write it."""

    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(D, H), nn.Linear(H, H), nn.Linear(H, H)])
        self.out = nn.Linear(H, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        for fc in self.fcs:
            x = self.relu(fc(x))
        return self.out(x)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_an_activation_shared_by_every_layer_gives_each_its_own_rows(accumulate):
    """The n-th call of a shared nn.ReLU is the n-th hidden layer's activation: the tables (da_norm at the
    activation's output included) equal those of the nn.Sequential with a ReLU of its own per layer, bit for
    bit, also over micro-batches (each forward counts its calls afresh)."""
    import copy

    torch.manual_seed(6)
    own = SharedReLU().double()
    seq = nn.Sequential(*[m for fc in copy.deepcopy(own.fcs) for m in (fc, nn.ReLU())], copy.deepcopy(own.out))
    watchers = [watched(model, accumulate=accumulate, name="run") for model in (own, seq)]
    got, want = (w.tables()["layers"] for w in watchers)
    assert got["da_norm"].notna().all(), got
    pd.testing.assert_frame_equal(got, want, check_exact=True)


class Keyword(nn.Module):
    """The mlp() stack behind a forward that takes its input by keyword, optionally with a second tensor."""

    def __init__(self, needs_scale=False):
        super().__init__()
        self.net, self.needs_scale = mlp(), needs_scale

    def forward(self, x=None, scale=None):
        if self.needs_scale and scale is None:
            raise TypeError("forward() needs scale")
        return self.net(x) * (1.0 if scale is None else scale)


def test_a_model_called_with_keywords_is_probed_with_the_same_keyword():
    """model(x=x): the probe forward passes the probe as x=, and the tables are those of model.net(x)."""
    import copy

    keyword = Keyword()
    plain = copy.deepcopy(keyword.net)
    got = watched(keyword, call=lambda m, x: m(x=x), name="run").tables()["layers"]
    assert got["act_mean"].notna().all(), got
    pd.testing.assert_frame_equal(got, watched(plain, name="run").tables()["layers"], check_exact=True)


def test_a_model_the_probe_cannot_call_alone_trains_on_without_probe_columns():
    """A forward that needs more than its input: one warning, the probe columns NaN, the gradients measured,
    the user's loop not interrupted; the activation, never seen, is "unknown"."""
    with pytest.warns(UserWarning, match="no probe statistics"):
        w = watched(Keyword(needs_scale=True), call=lambda m, x: m(x=x, scale=torch.ones(())))
    layers = w.tables()["layers"]
    assert len(w.tables()["steps"]) == STEPS and sorted(layers["step"].unique()) == list(LOGGED)
    assert layers["act_mean"].isna().all() and layers["dead_frac"].isna().all(), layers
    assert layers["delta_norm"].notna().all() and layers["weight_grad_norm"].notna().all(), layers
    assert w.record()["activation"] == "unknown"


@pytest.mark.parametrize("norms, name", [
    ((None, None), "none"), ((nn.LayerNorm, nn.LayerNorm), "layer"), ((nn.BatchNorm1d, nn.BatchNorm1d), "batch"),
    ((lambda h: nn.GroupNorm(2, h), None), "groupnorm"), ((nn.LayerNorm, nn.BatchNorm1d), "mixed"),
])  # fmt: skip
def test_the_runs_row_names_the_norm_layers_the_model_has(norms, name):
    """gradlab's "layer" and "batch" for nn.LayerNorm and nn.BatchNorm*, any other norm by its class (a
    GroupNorm is no layer norm), "mixed" for two kinds."""
    torch.manual_seed(0)
    mods = [nn.Linear(D, H)]
    for norm in norms:
        mods += ([norm(H)] if norm else []) + [nn.Tanh(), nn.Linear(H, H)]
    w = watched(nn.Sequential(*mods, nn.Tanh(), nn.Linear(H, 1)).double(), steps=2)
    assert w.record()["norm"] == name, w.record()["norm"]


class Tied(nn.Module):
    """A tanh MLP that applies its middle layer twice (its weights shared by two layers)."""

    def __init__(self):
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(D, H), nn.Linear(H, H), nn.Linear(H, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.mid(torch.tanh(self.mid(torch.tanh(self.inp(x)))))))


def test_a_layer_called_twice_in_a_forward_is_named_in_a_warning():
    """One row cannot hold two layers' measurements: the watcher says which module it pooled."""
    with pytest.warns(UserWarning, match=r"called more than once in a forward.*: mid \(2 calls\)"):
        w = watched(Tied().double())
    assert w.row_names() == ["inp", "mid", "out"], w.row_names()


def test_core_never_imports_torch():
    code = "import sys, gradlab, gradlab.sweep.runner, gradlab.report, gradlab.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "importing gradlab's core imported torch"


def test_step0_theory_sentence_joins_the_diagnosis():
    """gradlab.torch.theory at step 0, on the weights before the first update and the measured delta norms."""
    import copy

    from gradlab.torch import theory

    torch.manual_seed(2)
    model = nn.Sequential(*[m for _ in range(5) for m in (nn.Linear(16, 16), nn.ReLU())], nn.Linear(16, 1)).double()
    initial = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with watch(model, every=5, optimizer=opt) as w:
        for x, y in batches(6, shape=(16,)):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            w.step()
    layers = w.tables()["layers"]
    measured = layers[layers["step"] == 0].sort_values("layer")["delta_norm"].tolist()
    expected = theory.sentence(theory.step0(initial, measured))
    assert expected.startswith("Mean field predicts"), expected
    record = w.record()
    text = record["diagnosis_text"]
    assert text.endswith(" " + expected), f"diagnosis_text {text!r} does not end with theory's {expected!r}"
    mf = theory.mean_field(initial)
    assert record["init"] == "mean_field", record["init"]
    close(record["sigma_w2"], mf["sigma_w2"], "runs table sigma_w2 (measured at step 0)")
    close(record["sigma_b2"], mf["sigma_b2"], "runs table sigma_b2 (measured at step 0)")


def test_a_step_the_scaler_skipped_is_no_divergence():
    """A GradScaler that finds an inf skips optimizer.step(): the row keeps grad_norm inf (what the backward left)
    and grad_norm_clipped NaN (no step was taken), and neither the status nor the diagnosis calls it diverged."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, every=1, optimizer=opt, scaler=HandScaler(4.0)) as w:
        for s, (x, y) in enumerate(batches(3)):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            (4.0 * loss).backward() if s else (loss * math.inf).backward()
            if s:
                for p in model.parameters():
                    p.grad /= 4.0
                opt.step()  # step 0: skipped, as the scaler would
            w.step(loss)
    steps = w.tables()["steps"]
    assert math.isnan(steps["grad_norm"].iloc[0]) or math.isinf(steps["grad_norm"].iloc[0]), steps["grad_norm"].iloc[0]
    assert math.isnan(steps["grad_norm_clipped"].iloc[0]), steps["grad_norm_clipped"].iloc[0]
    assert np.isfinite(steps["grad_norm"].iloc[1:]).all()
    record = w.record()
    assert record["status"] == "ok" and record["diagnosis"] != "diverged", (record["status"], record["diagnosis_text"])


def test_loss_not_given_is_no_divergence():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, every=1, optimizer=opt) as w:
        for x, y in batches(2):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            w.step()
    assert w.tables()["steps"]["loss"].isna().all()
    record = w.record()
    assert record["status"] == "ok" and record["diagnosis"] != "diverged", (record["status"], record["diagnosis_text"])


class Cell(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU}[kind](3, 5, batch_first=True)
        self.readout = nn.Linear(5, 1)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.readout(h[:, -1])


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_rnn_and_gru_against_their_cells(kind):
    """nn.RNN / nn.GRU: the gradient norms from .grad (the GRU's bias_ih and bias_hh both, the RNN's merged bias
    once), dh_norm per step against nn.RNNCell / nn.GRUCell loaded with the same weights and unrolled with
    retain_grad on every h_t, and act_mean on the probe from the same cell loop."""
    torch.manual_seed(5)
    model = Cell(kind).double()
    data = batches(2, n=6, shape=(7, 3))
    probe = torch.randn(10, 7, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def unroll(x):
        cell = {"rnn": nn.RNNCell, "gru": nn.GRUCell}[kind](3, 5).double()
        cell.load_state_dict({k.removesuffix("_l0"): v.detach().clone() for k, v in model.rnn.state_dict().items()})
        h, hs = torch.zeros(x.shape[0], 5, dtype=x.dtype), []
        for t in range(x.shape[1]):
            h = cell(x[:, t], h)
            if h.requires_grad:
                h.retain_grad()
            hs.append(h)
        return hs

    refs = []
    with watch(model, every=1, probe=probe, optimizer=opt) as w:
        for x, y in data:
            hs = unroll(x)
            ((hs[-1] @ model.readout.weight.detach().T + model.readout.bias.detach() - y) ** 2).mean().backward()
            with torch.no_grad():
                probe_h = torch.stack(unroll(probe), 1)
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            names = ("bias_ih_l0", "bias_hh_l0") if kind == "gru" else ("bias_ih_l0",)
            refs.append({"dh": [example_mean(h.grad) for h in hs], "act_mean": float(probe_h.mean()),
                         "w": gnorm([model.rnn.weight_ih_l0.grad, model.rnn.weight_hh_l0.grad]),
                         "b": gnorm([getattr(model.rnn, n).grad for n in names])})  # fmt: skip
            opt.step()
            w.step()
    t = w.tables()
    for s, ref in enumerate(refs):
        ts = t["timesteps"][(t["timesteps"]["step"] == s)].sort_values("t")
        for k in range(7):
            close(ts["dh_norm"].iloc[k], ref["dh"][k], f"{kind} step {s} t {k} dh_norm")
        row = t["layers"][(t["layers"]["step"] == s) & (t["layers"]["layer"] == 0)].iloc[0]
        close(row["weight_grad_norm"], ref["w"], f"{kind} step {s} weight_grad_norm")
        close(row["bias_grad_norm"], ref["b"], f"{kind} step {s} bias_grad_norm")
        close(row["act_mean"], ref["act_mean"], f"{kind} step {s} act_mean on the probe")
    assert w.record()["model"] == kind


def test_with_optimizer_no_step_call_is_needed():
    """optimizer=: its post-step hook records each step; the tables equal those of a loop that calls
    watcher.step(loss), but for the loss, which only step(loss) can give."""
    data = batches(STEPS)
    tables = []
    for call in (True, False):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with watch(model, every=EVERY, probe=data[0][0], optimizer=opt, steps=STEPS) as w:
            for x, y in data:
                opt.zero_grad()
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                opt.step()
                if call:
                    w.step(loss)
        tables.append(w.tables())
    with_call, without = tables
    assert with_call["steps"]["loss"].notna().all() and without["steps"]["loss"].isna().all()
    pd.testing.assert_frame_equal(with_call["steps"].drop(columns="loss"), without["steps"].drop(columns="loss"), obj="steps")
    pd.testing.assert_frame_equal(with_call["layers"], without["layers"], obj="layers")


# ---------------------------------------------------------------- the cost cuts (issue 16): same numbers, less work


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layout", ["batch_first", "time_first", "unbatched"])
def test_probe_states_from_torch_equal_the_engines(kind, layout):
    """replay_bridge.layer_states (torch's kernel layer by layer, the top layer from the module's output) and
    step_gates (gradlab's cell step on all steps at once) give every cell layer's h_1..h_T and gates as
    gradlab's engine run through the recurrence does (float64, 1e-12), from a given initial state."""
    from gradlab.torch import replay, replay_bridge

    torch.manual_seed(11)
    L, T_, N_ = 2, 6, 4
    module = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](3, 5, num_layers=L, batch_first=layout == "batch_first").double()
    shape = {"batch_first": (N_, T_, 3), "time_first": (T_, N_, 3), "unbatched": (T_, 3)}[layout]
    x = torch.randn(*shape, dtype=torch.float64)
    h_shape = (L, 5) if layout == "unbatched" else (L, N_, 5)
    hx = (torch.randn(h_shape, dtype=torch.float64), torch.randn(h_shape, dtype=torch.float64)) if kind == "lstm" else torch.randn(h_shape, dtype=torch.float64)
    with torch.no_grad():
        output, _ = module(x, hx)
    twins: dict = {}
    for top in (output, None):  # the top layer from the module's output, then from a twin as well
        states = replay_bridge.layer_states(module, x, hx, top, twins)
        run = replay.engine_forward(module, x, hx)
        model = replay.engine_model(module)
        for j, (inp, h0, hs) in enumerate(states):
            ref = run.cache.layers[j]
            err = float(np.abs(hs.numpy() - ref.hs[1:].swapaxes(0, 1)).max())
            assert err <= 1e-12, f"{kind} {layout} layer {j} (top from output: {top is not None}): |h - engine h| = {err:.3g}"
            if kind != "rnn":
                x_steps = inp.numpy().reshape(-1, inp.shape[-1])
                h_prev = replay_bridge.previous_states(h0.numpy(), hs.numpy())
                gates = replay_bridge.step_gates(model, kind, j, x_steps, h_prev).reshape(*hs.shape[:2], -1)
                err = float(np.abs(gates - ref.gates.swapaxes(0, 1)).max())
                assert err <= 1e-12, f"{kind} {layout} layer {j}: |gates - engine gates| = {err:.3g}"
    assert len(twins) == L, f"twins kept: {len(twins)}, expected one per cell layer ({L})"


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("block_bytes", [1, 1100, 1 << 20])  # one row, 8 (LSTM) or 11 (GRU) of 35, all
def test_saturated_gates_in_blocks_count_all_the_gates(kind, block_bytes, monkeypatch):
    """_saturated_gates, forming the gates a block of steps at a time (one row, a block that does not divide
    N T, all at once), counts the saturated gate units of the engine's gates of the whole run (exact counts),
    on weights large enough that some, not all, saturate."""
    from gradlab.probes.layers import GATE_ACTIVATIONS, gates_saturated
    from gradlab.torch import replay, replay_bridge

    monkeypatch.setattr(replay_bridge, "GATE_BLOCK_BYTES", block_bytes)
    torch.manual_seed(5)
    module = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](3, 4, batch_first=True).double()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(6.0)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    run, model = replay.engine_forward(module, x, None), replay.engine_model(module)
    gates = run.cache.layers[0].gates.swapaxes(0, 1)  # (N, T, G H)
    expected = gates_saturated(gates, np.empty((5, 7, 4)), GATE_ACTIVATIONS[type(model)])
    assert 0 < expected < gates.size, f"{kind}: {expected} of {gates.size} saturated, the test needs some but not all"
    h = run.cache.layers[0].hs[1:].swapaxes(0, 1)
    got = replay_bridge._saturated_gates(model, kind, 0, x.numpy(), np.zeros((5, 4)), np.ascontiguousarray(h))
    assert got == expected, f"{kind}, {block_bytes}-byte blocks: {got} saturated gate units, the whole run's gates give {expected}"


EDITS = {  # what a loop may do to the gradients between the backward and the optimizer step
    "no edit": lambda m: None,
    "clip_grad_norm_": lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 0.05),
    "clip_grad_value_": lambda m: torch.nn.utils.clip_grad_value_(m.parameters(), 0.01),
    "in-place mul_ on one .grad": lambda m: m[0].weight.grad.mul_(3.0),
    "one .grad replaced": lambda m: setattr(m[2].weight, "grad", m[2].weight.grad * 0.25),
    "one .grad deleted": lambda m: setattr(m[4].bias, "grad", None),
}


@pytest.mark.parametrize("optimizer", [True, False], ids=["optimizer=", "step() only"])
@pytest.mark.parametrize("edit", list(EDITS))
def test_norm_after_clipping_sees_every_edit_and_skips_the_pass_without_one(edit, optimizer, monkeypatch):
    """grad_norm_clipped equals ||g|| of the .grad the optimizer steps with (torch's, 1e-12) after norm and value
    clipping, an in-place edit, a replaced and a deleted .grad; without an edit it is grad_norm exactly, from
    the one pass at the end of the backward (the global-norm pass counted: 1 a step, else 2)."""
    from gradlab.torch import grads

    calls = []
    real = grads.grad_norms
    monkeypatch.setattr(grads, "grad_norms", lambda params: calls.append(1) or real(params))
    model = mlp(seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    refs = []
    with watch(model, every=100, optimizer=opt if optimizer else None) as w:
        for x, y in batches(3, seed=4):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                EDITS[edit](model)
            refs.append(gnorm(p.grad for p in model.parameters() if p.grad is not None))
            opt.step()
            w.step(loss)
    steps = w.tables()["steps"]
    for s, ref in enumerate(refs):
        close(steps["grad_norm_clipped"].iloc[s], ref, f"{edit}: step {s} grad_norm_clipped", 1e-12)
    if edit == "no edit":
        assert (steps["grad_norm_clipped"] == steps["grad_norm"]).all(), steps[["grad_norm", "grad_norm_clipped"]]
    assert len(calls) == (1 if edit == "no edit" else 2) * len(refs), f"{edit}: {len(calls)} global-norm passes in {len(refs)} steps"


def test_float32_lstm_within_float32_precision_of_float64():
    """A float32 LSTM is replayed in float32 and its probe states come from torch's float32 kernel: its
    timesteps and cell-layer rows agree with the same weights and data watched in float64 within float32's
    precision (1e-4 relative; saturated_frac within 1% of the gate units, dead_frac exactly)."""
    runs = []
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(2)
        model = Net().to(dtype)
        data = batches(2, n=6, shape=(7, 3), dtype=torch.float64)
        probe = torch.randn(20, 7, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64).to(dtype)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        with watch(model, every=1, probe=probe, optimizer=opt) as w:
            for x, y in data:
                opt.zero_grad()
                ((model(x.to(dtype)) - y.to(dtype)) ** 2).mean().backward()
                opt.step()
        runs.append(w.tables())
    (t32, t64) = runs
    for col in ("dh_norm", "dc_norm"):
        for k, (a, b) in enumerate(zip(t32["timesteps"][col], t64["timesteps"][col])):
            close(a, b, f"timesteps row {k} {col}: float32 vs float64", 1e-4)
    cells = lambda t: t["layers"][t["layers"]["layer"] < 2].reset_index(drop=True)  # noqa: E731
    a, b = cells(t32), cells(t64)
    for k in range(len(a)):
        for col in ("da_norm", "act_mean", "act_std", "weight_grad_norm"):
            close(a[col][k], b[col][k], f"cell row {k} {col}: float32 vs float64", 1e-4)
        assert a["dead_frac"][k] == b["dead_frac"][k], f"cell row {k} dead_frac: float32 {a['dead_frac'][k]}, float64 {b['dead_frac'][k]}"
        assert abs(a["saturated_frac"][k] - b["saturated_frac"][k]) <= 0.01, f"cell row {k} saturated_frac: float32 {a['saturated_frac'][k]}, float64 {b['saturated_frac'][k]}"


def test_float32_replay_that_would_underflow_is_done_in_float64():
    """A float32 RNN whose dL/dh_t vanishes far below float32's range (W_hh x 0.01 over 30 steps: 1e-60 at
    t = 0): the watcher's timesteps rows equal the float64 replay (1e-5 relative, from float32 inputs), down to
    the first step, instead of float32's zeros; a gradient of ordinary size stays in float32 (float32_safe)."""
    from gradlab.torch import replay, replay_bridge

    torch.manual_seed(4)
    model = Cell("rnn")
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(0.01)
        model.rnn.weight_ih_l0.mul_(0.01)
    x, y = torch.randn(6, 30, 3), torch.randn(6, 1)
    kept = []

    def keep(m, a, o):
        if o[0].requires_grad:  # the training forward, not the watcher's probe
            o[0].retain_grad()
            kept.append(o[0])

    model.rnn.register_forward_hook(keep)
    with watch(model, every=1) as w:
        ((model(x) - y) ** 2).mean().backward()
        w.step()
    out = kept[0]
    narrow = replay.recurrent(model.rnn, x, None, out.grad, dtype="float32")
    wide = replay.recurrent(model.rnn, x, None, out.grad, dtype="float64")
    assert not replay_bridge.float32_safe(narrow) and replay_bridge.float32_safe(replay.recurrent(model.rnn, x, None, out.grad * 0 + 1, dtype="float32"))
    expected = replay.timestep_rows(wide)["dh_norm"].to_numpy()
    got = w.tables()["timesteps"].sort_values("t")["dh_norm"].to_numpy()
    assert expected[0] < 1e-45, f"the test's gradient at t=0 should be beyond float32: {expected[0]!r}"
    for t_, (a, b) in enumerate(zip(got, expected)):
        close(a, b, f"t {t_} dh_norm: watcher vs float64 replay", 1e-5)


@pytest.mark.parametrize("workload", ["W1", "W3"])
def test_bench_loops_watched_and_not_train_alike(workload):
    """gradlab bench --torch compares like with like: a copy watched at every step (probe forwards, replays,
    snapshots) ends 3 steps with the very weights of the unwatched copy (bitwise), and its watcher logged them."""
    from gradlab.bench import torch_watch as tw

    plain, watched = tw.Loop(workload, None), tw.Loop(workload, 1)
    plain.block(3), watched.block(3)
    for (name, a), b in zip(plain.model.named_parameters(), watched.model.parameters()):
        assert torch.equal(a, b), f"{workload} {name}: watched differs from plain by {float((a - b).abs().max())!r}"
    steps = watched.watcher.tables()["steps"]
    assert steps["step"].tolist() == [0, 1, 2], f"{workload}: steps recorded {steps['step'].tolist()}"
    watched.watcher.close()


@pytest.mark.parametrize("optimizer", [True, False], ids=["optimizer=", "step() only"])
@pytest.mark.parametrize("max_norm", [0.05, 1e3], ids=["clips", "does not clip"])
def test_the_watchers_clip_is_torchs_from_the_norm_it_took(max_norm, optimizer, monkeypatch):
    """watcher.clip_grad_norm_ leaves the .grad torch.nn.utils.clip_grad_norm_ leaves on a twin model (float64,
    1e-14; bit for bit where it does not clip), returns torch's norm, records grad_norm_clipped = ||clipped
    .grad|| (1e-12) and reads the gradients once a step (the global-norm passes counted), not twice."""
    import copy

    from gradlab.torch import grads

    calls = []
    real = grads.grad_norms
    monkeypatch.setattr(grads, "grad_norms", lambda params: calls.append(1) or real(params))
    model = mlp(seed=3)
    twin = copy.deepcopy(model)
    opt, opt_twin = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, twin))
    data = batches(3, seed=4)
    after = []
    with watch(model, every=100, optimizer=opt if optimizer else None) as w:
        for x, y in data:
            for m, o in ((model, opt), (twin, opt_twin)):
                o.zero_grad()
                ((m(x) - y) ** 2).mean().backward()
            ours = w.clip_grad_norm_(max_norm)
            theirs = torch.nn.utils.clip_grad_norm_(twin.parameters(), max_norm)
            close(float(ours), float(theirs), f"max_norm {max_norm}: the norm returned", 1e-14)
            for (name, p), q in zip(model.named_parameters(), twin.parameters()):
                err = float((p.grad - q.grad).abs().max() / q.grad.abs().max())
                assert err <= (0.0 if max_norm > 1 else 1e-14), f"max_norm {max_norm}: {name}.grad off torch's clip by {err:.3g}"
            after.append(gnorm(p.grad for p in model.parameters()))
            opt.step()
            opt_twin.step()
            w.step()
    steps = w.tables()["steps"]
    for s, ref in enumerate(after):
        close(steps["grad_norm_clipped"].iloc[s], ref, f"max_norm {max_norm}: step {s} grad_norm_clipped", 1e-12)
    assert len(calls) == len(data), f"{len(calls)} global-norm passes in {len(data)} steps (one a step expected)"


def test_the_watchers_clip_of_a_nonfinite_norm_is_torchs():
    """An inf gradient: torch's clip scales by max_norm / inf = 0 (inf * 0 is NaN), and so does the watcher's;
    error_if_nonfinite raises a one-line RuntimeError, as torch's does; a max_norm <= 0 is a ValueError."""
    import copy

    model = mlp(seed=5)
    twin = copy.deepcopy(model)
    x, y = batches(1, seed=6)[0]
    with watch(model, every=1) as w:
        for m in (model, twin):
            ((m(x) - y) ** 2).mean().backward()
            m[0].weight.grad[0, 0] = math.inf
        with pytest.raises(RuntimeError, match="inf") as err:
            w.clip_grad_norm_(1.0, error_if_nonfinite=True)
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match="positive finite"):
            w.clip_grad_norm_(0.0)
        w.clip_grad_norm_(1.0)
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        for (name, p), q in zip(model.named_parameters(), twin.parameters()):
            assert torch.equal(p.grad.isnan(), q.grad.isnan()), f"{name}: NaN where torch's clip left none, or none where it did"
            assert torch.equal(torch.nan_to_num(p.grad), torch.nan_to_num(q.grad)), f"{name}.grad differs from torch's clip"
