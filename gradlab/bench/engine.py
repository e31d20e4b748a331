"""`gradlab bench`: the time of one training step of the engine on four workloads, against NumPy's own
matrix-product peak and, when it is importable, PyTorch doing the same step with the same weights.

A training step is: forward, loss (mse, 1/2 convention), backward without the input gradient, clipping by
global norm (gradlab.nn.clip.clip_norm, Pascanu et al. 2013) and an SGD update (gradlab.nn.optim.SGD).

    W1  MLP 256 -> 20 x 256 -> 1, batch 128, tanh, mse, norm clipping
    W2  tanh RNN D=2, H=128, T=100, N=32, loss on the last step
    W3  LSTM     D=2, H=128, T=100, N=32, loss on the last step
    W4  MLP 2048 -> 8 x 2048 -> 1, batch 512, ReLU (bound by the matrix products)
    W5  GRU      D=2, H=128, T=100, N=32, loss on the last step
    W6  LSTM with 2 layers, the sizes of W3
    W7  W1 with batch norm in every hidden layer
    W8  an ensemble of R = 16 small MLPs 1 -> 5 x 8 -> 1, batch 32, ReLU, against 16 separate steps

Every timing is the median over repeats; the variants of one workload (ours, ours with the trace, PyTorch's
fused module, PyTorch's cell loop) are interleaved within each repeat, so that noise from other processes
hits them alike. Only ratios measured in the same run mean anything on a shared machine. The engine takes
its BLAS threads from gradlab._process's rule (one per free core for a large product), PyTorch all of them;
each workload's row says how many cores other processes kept busy while it was measured (from /proc/stat).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from gradlab import _process
from gradlab.sweep.terminal import MIN_WIDTH, Col, table, wrap
from gradlab.nn import GRU, LSTM, MLP, RNN
from gradlab.nn.clip import clip_norm
from gradlab.nn.losses import mse
from gradlab.nn.optim import SGD

MAX_NORM = 1.0  # clipping threshold of every workload
LR = 1e-3  # SGD learning rate (small: repeats barely move the weights)
PEAK_SIZE = 2048  # NumPy's peak is measured on a PEAK_SIZE x PEAK_SIZE matrix product
MEMORY_T = 1000  # sequence length of the memory measurement (W3 otherwise)


@dataclass(frozen=True)
class Workload:
    """One benchmark problem. model is mlp, rnn, lstm or gru; for an MLP `layers` hidden layers of `hidden`
    units (with `norm` after each); for a sequence model `layers` stacked cells over T steps and the loss on the
    last one; `ensemble` members trained as one step."""

    name: str
    model: str
    input_size: int
    hidden: int
    batch: int
    activation: str = "tanh"
    layers: int = 1
    T: int = 1
    output_size: int = 1
    init: str = "standard"
    norm: str | None = None
    ensemble: int | None = None

    def describe(self) -> str:
        if self.model == "mlp":
            norm = f", {self.norm} norm" if self.norm else ""
            text = (f"MLP {self.input_size} -> {self.layers} x {self.hidden} -> {self.output_size}, batch {self.batch}, "
                    f"{self.activation}{norm}, mse, norm clipping")  # fmt: skip
        else:
            kind = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU"}[self.model]
            stacked = f" x {self.layers} layers" if self.layers > 1 else ""
            text = (f"{kind}{stacked} D={self.input_size}, H={self.hidden}, T={self.T}, N={self.batch}, O={self.output_size}, "
                    "loss on the last step, mse, norm clipping")  # fmt: skip
        return text + (f"; an ensemble of R = {self.ensemble}, against {self.ensemble} separate steps" if self.ensemble else "")


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", "mlp", 256, 256, 128, "tanh", layers=20, init="xavier_uniform"),
    "W2": Workload("W2", "rnn", 2, 128, 32, "tanh", T=100),
    "W3": Workload("W3", "lstm", 2, 128, 32, T=100),
    "W4": Workload("W4", "mlp", 2048, 2048, 512, "relu", layers=8, init="he_uniform"),
    "W5": Workload("W5", "gru", 2, 128, 32, T=100),
    "W6": Workload("W6", "lstm", 2, 128, 32, T=100, layers=2),
    "W7": Workload("W7", "mlp", 256, 256, 128, "tanh", layers=20, init="xavier_uniform", norm="batch"),
    "W8": Workload("W8", "mlp", 1, 8, 32, "relu", layers=5, init="he_uniform", ensemble=16),
}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def matmul_flops(w: Workload) -> int:
    """Floating-point operations of the matrix products of one training step (2 m k n per (m, k) x (k, n)
    product; elementwise work is not counted), as the engine does them with input_grad=False.

    MLP with layer sizes n_0 .. n_L and batch N: each layer l does z = a W^T (2 N n_l n_(l+1)), dW = delta^T a
    (the same) and, except the first, da = delta W (the same):
        sum_l 2 N n_l n_(l+1) (3 - [l = 0]), times R for an ensemble.
    RNN / LSTM / GRU with G gate blocks (1, 4, 3), T steps, input D_j of layer j (D, then H), hidden H,
    readout O, loss on the last step: per layer, input projection 2 T N D_j GH, recurrence 2 T N H GH forward
    and 2 T N GH H backward (dL/dh_(t-1) at every step, down to dh0), dW_ih 2 T N GH D_j, dW_hh 2 T N GH H,
    and above layer 0 the gradient of its input 2 T N GH H; readout 2 N H O forward, 2 N O H for dW_out
    and 2 N O H for dL/dh_T:
        sum_j 2 T N GH (2 D_j + 3 H + [j > 0] H) + 6 N H O.
    """
    N = w.batch
    if w.model == "mlp":
        sizes = [w.input_size] + [w.hidden] * w.layers + [w.output_size]
        one = sum(2 * N * a * b * (3 - (l == 0)) for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
        return one * (w.ensemble or 1)
    G, T, H, O = GATES[w.model], w.T, w.hidden, w.output_size
    return sum(2 * T * N * G * H * (2 * (w.input_size if j == 0 else H) + 3 * H + (j > 0) * H) for j in range(w.layers)) + 6 * N * H * O


# ---------------------------------------------------------------------------------------------------------------
# the step, ours and PyTorch's


def data(w: Workload, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs x ((N, D) or (N, T, D), and (R, ...) for an ensemble) and targets y (N, O), standard normal."""
    rng = np.random.default_rng(seed + 1)
    shape = (w.batch, w.input_size) if w.model == "mlp" else (w.batch, w.T, w.input_size)
    lead = (w.ensemble,) if w.ensemble else ()
    return rng.standard_normal((*lead, *shape)).astype(dtype), rng.standard_normal((*lead, w.batch, w.output_size)).astype(dtype)


def build_model(w: Workload, dtype: str, seed: int = 0) -> MLP | RNN | LSTM | GRU:
    rng = np.random.default_rng(seed)
    if w.model == "mlp":
        sizes = [w.input_size] + [w.hidden] * w.layers + [w.output_size]
        return MLP(sizes, w.activation, init=w.init, rng=rng, dtype=dtype, norm=w.norm, ensemble=w.ensemble)
    options = dict(init=w.init, rng=rng, dtype=dtype, layers=w.layers)
    if w.model == "rnn":
        return RNN(w.input_size, w.hidden, w.output_size, w.activation, **options)
    return {"lstm": LSTM, "gru": GRU}[w.model](w.input_size, w.hidden, w.output_size, **options)


class OurStep:
    """One training step of the engine; call it (trace=True records the trace) to get the loss."""

    def __init__(self, w: Workload, dtype: str, seed: int = 0) -> None:
        self.model = build_model(w, dtype, seed)
        self.x, self.y = data(w, dtype, seed)
        self.opt = SGD(self.model.params, LR)
        self.grads: dict[str, np.ndarray] = {}
        self.members = w.ensemble is not None

    def __call__(self, trace: bool = False) -> float:
        out, cache = self.model.forward(self.x, trace=trace)
        loss, dout = mse(out, self.y, lead=int(self.members))
        self.grads = self.model.backward(dout, cache, input_grad=False).params
        clip_norm(self.grads, MAX_NORM, ensemble=self.members)
        self.opt.step(self.grads)
        return float(np.sum(loss))


class SeparateSteps:
    """W8's comparison: the ensemble's R members as R models of their own, stepped one after the other."""

    def __init__(self, w: Workload, dtype: str, seed: int = 0) -> None:
        alone = replace(w, ensemble=None)
        self.steps = [OurStep(alone, dtype, seed + 100 * r) for r in range(w.ensemble or 1)]

    def __call__(self) -> float:
        return sum(step() for step in self.steps)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchStep:
    """The same step in PyTorch, starting from the same weights as OurStep(w, dtype, seed) (loaded through
    the engine's torch_state()).

    variant "fused": nn.Sequential of nn.Linear (with nn.BatchNorm1d for norm="batch") for an MLP, nn.RNN /
    nn.LSTM / nn.GRU(num_layers) for a sequence model; variant "cell": nn.RNNCell / LSTMCell / GRUCell called
    over t (one layer), with h_t.retain_grad() at every step (the only way PyTorch exposes dL/dh_t). The loss
    is 1/2 the squared error summed over outputs, averaged over the batch. An RNN's or LSTM's bias_hh is
    frozen at 0, so that the trained parameters are the engine's (one merged bias); the GRU trains both.
    """

    def __init__(self, w: Workload, dtype: str, seed: int = 0, variant: str = "fused") -> None:
        import torch

        self.torch, self.w, self.variant = torch, w, variant
        tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        ours = build_model(w, dtype, seed)
        x, y = data(w, dtype, seed)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        nn = torch.nn
        tensors = lambda state: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}  # noqa: E731
        if w.model == "mlp":
            act = {"tanh": nn.Tanh, "relu": nn.ReLU}[w.activation]
            mods: list = []
            for l in range(ours.depth):
                mods.append(nn.Linear(ours.sizes[l], ours.sizes[l + 1], dtype=tdtype))
                if l < ours.depth - 1:
                    mods += ([nn.BatchNorm1d(ours.sizes[l + 1], dtype=tdtype)] if w.norm == "batch" else []) + [act()]
            self.net = self.core = nn.Sequential(*mods)
            self.readout = None
            missing, unexpected = self.net.load_state_dict(tensors(ours.torch_state()), strict=False)
            assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
        else:
            D, H = w.input_size, w.hidden
            kw = {"nonlinearity": w.activation} if w.model == "rnn" else {}
            state, readout = ours.torch_state()
            if variant == "fused":
                cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[w.model]
                self.core = cls(D, H, num_layers=w.layers, batch_first=True, dtype=tdtype, **kw)
                self.core.load_state_dict(tensors(state))
            else:
                cls = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[w.model]
                self.core = cls(D, H, dtype=tdtype, **kw)
                self.core.load_state_dict(tensors({k.removesuffix("_l0"): v for k, v in state.items()}))
            self.readout = nn.Linear(H, w.output_size, dtype=tdtype)
            self.readout.load_state_dict(tensors(readout))
            if w.model != "gru":
                for name, q in self.core.named_parameters():
                    if name.startswith("bias_hh"):
                        q.requires_grad_(False)  # frozen at 0: one bias, as the engine's
            self.net = nn.ModuleList([self.core, self.readout])
        self.parameters = [q for q in self.net.parameters() if q.requires_grad]
        self.opt = torch.optim.SGD(self.parameters, lr=LR)
        self.hs: list = []

    def forward(self):
        torch, w = self.torch, self.w
        if w.model == "mlp":
            return self.net(self.x)
        if self.variant == "fused":
            out, _ = self.core(self.x)
            return self.readout(out[:, -1])
        N, H = w.batch, w.hidden
        h = torch.zeros(N, H, dtype=self.x.dtype)
        c = torch.zeros(N, H, dtype=self.x.dtype)
        self.hs = []
        for t in range(w.T):
            if w.model == "lstm":
                h, c = self.core(self.x[:, t], (h, c))
            else:
                h = self.core(self.x[:, t], h)
            h.retain_grad()  # dL/dh_t, as the engine's trace
            self.hs.append(h)
        return self.readout(h)

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        out = self.forward()
        loss = 0.5 * ((out - self.y) ** 2).sum(dim=-1).mean()
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.parameters, MAX_NORM)
        self.opt.step()
        return float(loss.detach())


def torch_params(step: TorchStep, grad: bool = False) -> dict[str, np.ndarray]:
    """The torch model's parameters (or, with grad=True, their .grad after the step's clipping) under the
    engine's names; an RNN's or LSTM's two biases are added up."""
    get = (lambda t: t.grad.detach().numpy() if t.grad is not None else 0.0) if grad else (lambda t: t.detach().numpy())  # noqa: E731
    if step.w.model == "mlp":
        out, l, k = {}, 0, 0
        for m in step.net:
            prefix = f"layers.{l}." if isinstance(m, step.torch.nn.Linear) else f"layers.{l - 1}.norm."
            if isinstance(m, (step.torch.nn.Linear, step.torch.nn.BatchNorm1d)):
                out[prefix + "weight"], out[prefix + "bias"] = get(m.weight), get(m.bias)
                l += isinstance(m, step.torch.nn.Linear)
            k += 1
        return out
    named = dict(step.core.named_parameters())
    out = {}
    for j in range(step.w.layers):
        s = f"_l{j}" if step.variant == "fused" else ""
        ours = "" if j == 0 else f"_l{j}"
        for name in ("weight_ih", "weight_hh"):
            out[name + ours] = get(named[name + s])
        if step.w.model == "gru":
            out["bias_ih" + ours], out["bias_hh" + ours] = get(named["bias_ih" + s]), get(named["bias_hh" + s])
        else:
            out["bias" + ours] = get(named["bias_ih" + s]) + get(named["bias_hh" + s])
    out["readout.weight"], out["readout.bias"] = get(step.readout.weight), get(step.readout.bias)
    return out


# ---------------------------------------------------------------------------------------------------------------
# measuring


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each variant, one per repeat; each repeat runs every variant once, in a fresh random order
    (so that what one variant leaves behind, e.g. PyTorch's OpenMP threads still spinning, falls on every
    variant alike)."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    order = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k in order.permutation(list(variants)):
            times[k].append(_time(variants[k]))
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repeats of a_r / b_r: the two were timed within the same repeat, so a slow stretch of the
    machine that hits both cancels (a ratio of medians would not cancel it)."""
    return statistics.median(x / y for x, y in zip(a, b))


def matmul_peak(dtype: str, repeats: int = 5, n: int = PEAK_SIZE) -> float:
    """NumPy's matrix-product rate in GFLOP/s: the best of `repeats` n x n products of this dtype, on the
    threads the engine's products get (gradlab._process.threads_for)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype=dtype)
    with _process.threads_for(n**3):
        np.matmul(a, b, out=out)
        best = min(_time(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))  # a peak: the best, not the median
    return 2 * n**3 / best / 1e9


def lstm_memory(T: int = MEMORY_T, dtype: str = "float64") -> tuple[int, int]:
    """(peak bytes traced during one W3 training step at sequence length T, bytes of the arrays in the
    LSTM's cache). tracemalloc sees NumPy's array allocations; model, data and optimizer are made first."""
    w = WORKLOADS["W3"]
    step = OurStep(Workload("W3", "lstm", w.input_size, w.hidden, w.batch, T=T), dtype)
    cache_bytes = 0

    def run() -> None:
        nonlocal cache_bytes
        out, cache = step.model.forward(step.x)
        cache_bytes = cache.inputs[0].nbytes + sum(
            a.nbytes for f in cache.layers for a in (f.hs, f.cs, f.gates, f.cache.tanh_c) if a is not None
        )  # x, h_0..h_T, c_0..c_T, the gates and tanh(c_t)
        loss, dout = mse(out, step.y)
        grads = step.model.backward(dout, cache, input_grad=False).params
        clip_norm(grads, MAX_NORM)
        step.opt.step(grads)

    run()  # warm up (one-off allocations are not the step's)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, cache_bytes


def blas_threads() -> int:
    """Threads NumPy's BLAS uses: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS if set, else the usable cores."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas_s = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001  (older NumPy)
        blas_s = "unknown"
    lines = [
        f"machine: {cpu}, {os.cpu_count()} cores ({blas_threads()} usable), {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, numpy {np.__version__} with BLAS {blas_s}",
    ]
    if torch_available():
        import torch

        lines.append(f"torch {torch.__version__} (MKL {torch.backends.mkl.is_available()}), threads set to {blas_threads()}")
    else:
        lines.append("torch: not importable, PyTorch comparisons skipped")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class Result:
    workload: str
    dtype: str
    ms: float  # median ms per step
    gflops: float
    peak_frac: float  # of the run's matmul peak
    trace_pct: float  # paired: median over repeats of (trace / ours) - 1, in %
    torch_ms: dict[str, float] = field(default_factory=dict)  # variant -> median ms
    ratios: dict[str, float] = field(default_factory=dict)  # variant -> paired ours / torch
    matmul_frac: float = math.nan  # paired, against a PEAK_SIZE^2 matmul interleaved with the repeats (W4)
    others: float = math.nan  # cores other processes kept busy on average during the measurement

    def ratio(self, variant: str) -> float:
        return self.ratios.get(variant, math.nan)


def measure(
    w: Workload, dtype: str, repeats: int, peak: float, with_torch: bool, warmup: int = 1, interleave_peak: bool = False
) -> Result:
    ours = OurStep(w, dtype)
    variants: dict[str, Callable[[], object]] = {"ours": ours, "trace": lambda: ours(trace=True)}
    if w.ensemble:
        variants["separate"] = SeparateSteps(w, dtype)
    elif with_torch:
        variants["fused"] = TorchStep(w, dtype, variant="fused")
        if w.model != "mlp" and w.layers == 1:
            variants["cell"] = TorchStep(w, dtype, variant="cell")
    if interleave_peak:
        a, b, c = (np.random.default_rng(0).standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(dtype) for _ in range(3))

        def matmul() -> None:
            with _process.threads_for(PEAK_SIZE**3):  # the threads the engine's products get
                np.matmul(a, b, out=c)

        variants["matmul"] = matmul
    before = _process.RULE.sample()
    t = interleaved(variants, repeats, warmup)
    after = _process.RULE.sample()
    med = {k: statistics.median(v) for k, v in t.items()}
    flops = matmul_flops(w)
    gflops = flops / med["ours"] / 1e9
    r = Result(
        w.name, dtype, 1e3 * med["ours"], gflops, gflops / peak, 100 * (paired_ratio(t["trace"], t["ours"]) - 1),
        {k: 1e3 * med[k] for k in ("fused", "cell", "separate") if k in t},
        {k: paired_ratio(t["ours"], t[k]) for k in ("fused", "cell", "separate") if k in t},
    )  # fmt: skip
    if before is not None and after is not None:
        r.others = _process.others_cores(before, after, _process.RULE.cpus, _process.RULE.hz)
    if interleave_peak:  # (flops / t_ours) / (matmul flops / t_matmul)
        r.matmul_frac = flops / (2 * PEAK_SIZE**3) / paired_ratio(t["ours"], t["matmul"])
    return r


def floor(r: Result) -> float:
    """The ratio to PyTorch that r's step would have if its products ran at the run's matmul peak and the rest
    took no time: (flops / peak) / torch_ms = ratio x peak_frac. Above a target, no engine on the run's BLAS
    threads meets it on this machine."""
    return r.ratio("fused") * r.peak_frac


def targets(results: list[Result], memory_ratio: float | None) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target of the issue that this run measured."""
    rows = []

    def each(name: str, check: Callable[[Result], tuple[float, bool]], fmt: str, label: str) -> None:
        rs = [r for r in results if r.workload == name]
        vals = [(r.dtype, *check(r)) for r in rs]
        vals = [v for v in vals if not math.isnan(v[1])]
        if vals:
            rows.append((label, ", ".join(f"{d[5:]}: {fmt.format(x)}" for d, x, _ in vals), all(ok for *_, ok in vals)))

    each("W1", lambda r: (r.ratio("fused"), r.ratio("fused") <= 0.6), "{:.2f}x", "W1 <= 0.6x PyTorch")
    each("W1", lambda r: (floor(r), floor(r) <= 0.6), "{:.2f}x", "W1 floor <= 0.6x PyTorch")
    each("W2", lambda r: (r.ratio("fused"), r.ratio("fused") <= 1.0), "{:.2f}x", "W2 <= 1.0x fused nn.RNN")
    each("W3", lambda r: (r.ratio("cell"), r.ratio("cell") <= 1.0), "{:.2f}x", "W3 <= 1.0x LSTMCell loop")
    each("W3", lambda r: (r.ratio("fused"), r.ratio("fused") <= 1.5), "{:.2f}x", "W3 <= 1.5x fused nn.LSTM")
    each("W4", lambda r: (100 * r.matmul_frac, r.matmul_frac >= 0.85), "{:.1f}%", "W4 >= 85% of matmul (interleaved)")
    each("W5", lambda r: (r.ratio("fused"), r.ratio("fused") <= 1.0), "{:.2f}x", "W5 <= 1.0x fused nn.GRU")
    each("W5", lambda r: (r.ratio("cell"), r.ratio("cell") <= 0.5), "{:.2f}x", "W5 <= 0.5x GRUCell loop")
    each("W6", lambda r: (r.ratio("fused"), r.ratio("fused") <= 1.0), "{:.2f}x", "W6 <= 1.0x nn.LSTM(num_layers=2)")
    each("W7", lambda r: (r.ratio("fused"), r.ratio("fused") <= 1.0), "{:.2f}x", "W7 <= 1.0x PyTorch + BatchNorm1d")
    each("W8", lambda r: (1 / r.ratio("separate"), r.ratio("separate") <= 1 / 8), "{:.1f}x", "W8 ensemble >= 8x 16 separate steps")
    if results:
        worst = max(results, key=lambda r: r.trace_pct)
        rows.append(("trace cost <= 15%", f"worst {worst.trace_pct:+.1f}% ({worst.workload} {worst.dtype})",
                     all(r.trace_pct <= 15 for r in results)))  # fmt: skip
    if memory_ratio is not None:
        rows.append((f"W3 memory at T={MEMORY_T} <= 1.5x cache", f"{memory_ratio:.2f}x", memory_ratio <= 1.5))
    return rows


def run(
    quick: bool = False,
    only: Iterable[str] | None = None,
    dtypes: Iterable[str] = ("float32", "float64"),
    echo: Callable[[str], None] = print,
    width: int = MIN_WIDTH,
) -> list[Result]:
    """Measure and print the table (its lines at most `width` columns); returns the results."""
    names = [n.strip().upper() for n in (only or WORKLOADS)]
    for n in names:
        if n not in WORKLOADS:
            raise ValueError(f"only must list workloads among {', '.join(WORKLOADS)}, got {n!r}")
    dtypes = list(dtypes)
    for d in dtypes:
        if d not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {d!r}")
    with_torch = torch_available()
    if with_torch:
        import torch

        torch.set_num_threads(blas_threads())
    for line in machine():
        echo(wrap(line, width, "  "))
    echo(wrap(f"command: gradlab bench{' --quick' if quick else ''}; one step = forward, mse loss, backward "
              f"(input_grad=False), clip_norm({MAX_NORM}), SGD(lr={LR}); ms: median of repeats; variants interleaved in "
              "random order; ratios and trace cost: median over repeats of the ratio within the repeat", width, "  "))  # fmt: skip
    for n in names:
        echo(wrap(WORKLOADS[n].describe(), width, "      ", f"  {n}: "))
    peaks = {d: matmul_peak(d, repeats=3 if quick else 5) for d in dtypes}
    results = []
    for n in names:
        w = WORKLOADS[n]
        big = w.name == "W4"  # seconds per step: fewer repeats
        repeats = (3 if big else 7) if quick else (11 if big else 31)
        for d in dtypes:
            peaks[d] = max(peaks[d], matmul_peak(d, repeats=2))  # the peak: the best sample of the whole run
            r = measure(w, d, repeats, peaks[d], with_torch, warmup=0 if big and quick else 1, interleave_peak=big)
            results.append(r)
    for r in results:
        r.peak_frac = r.gflops / peaks[r.dtype]
    echo(wrap(f"matmul peak (NumPy, {PEAK_SIZE}x{PEAK_SIZE}, best sample of the run): "
              + ", ".join(f"{d} {p:.1f} GFLOP/s" for d, p in peaks.items()), width, "  "))  # fmt: skip
    echo("")
    echo(results_table(results, width))
    for r in results:
        if "separate" in r.torch_ms:
            echo(wrap(f"{r.workload} {r.dtype}: one ensemble step {r.ms:.2f} ms, {WORKLOADS[r.workload].ensemble} separate "
                      f"steps {r.torch_ms['separate']:.2f} ms: {1 / r.ratio('separate'):.1f}x faster", width, "  "))  # fmt: skip
    w4 = ", ".join(f"{r.dtype} {100 * r.matmul_frac:.1f}%" for r in results if r.workload == "W4") or "-"
    echo(wrap("(torch ms: nn.Sequential (with BatchNorm1d for W7) / fused nn.RNN, nn.LSTM, nn.GRU; cell ms: RNNCell / "
              "LSTMCell / GRUCell loop with h_t.retain_grad(); trace: step with forward(trace=True) vs without; others: "
              "cores other processes kept busy during the row's measurement, of which the engine's thread rule gives up "
              f"as many; %peak: of the best matmul sample; W4 also against a {PEAK_SIZE}x{PEAK_SIZE} matmul timed between "
              f"its repeats: {w4})", width, " "))  # fmt: skip
    memory_ratio = None
    if "W3" in names:
        peak, cache = lstm_memory(MEMORY_T, dtypes[-1])
        memory_ratio = peak / cache
        echo(wrap(f"memory: one W3 step at T={MEMORY_T} ({dtypes[-1]}): peak {peak / 2**20:.1f} MiB traced, cache arrays "
                  f"{cache / 2**20:.1f} MiB, ratio {memory_ratio:.2f}x", width, "  "))  # fmt: skip
    echo("")
    echo("targets:")
    rows = [(label, value, "met" if ok else "NOT met") for label, value, ok in targets(results, memory_ratio)]
    echo(table([Col("target", wrap=True), Col("measured", wrap=True), Col("")], rows, width))
    if not with_torch:
        echo("  (PyTorch targets not measured: torch is not importable)")
    return results


def results_table(results: list[Result], width: int = MIN_WIDTH) -> str:
    """The per-workload table, at most `width` columns wide (gradlab.sweep.terminal; the PyTorch columns
    go under the others, after the workload and dtype again, when they do not fit beside them)."""
    cols = [Col("work"), Col("dtype")] + [Col(h, number=True) for h in
            ("ms/step", "GFLOP/s", "%peak", "trace", "torch ms", "ours/t", "cell ms", "ours/c", "others")]  # fmt: skip
    rows = []
    for r in results:
        torch = [f"{r.torch_ms[v]:.2f}" if v in r.torch_ms else "-" for v in ("fused", "cell")]
        ratio = [f"{r.ratio(v):.2f}x" if v in r.torch_ms else "-" for v in ("fused", "cell")]
        rows.append([r.workload, r.dtype, f"{r.ms:.2f}", f"{r.gflops:.1f}", f"{100 * r.peak_frac:.0f}%", f"{r.trace_pct:+.1f}%",
                     torch[0], ratio[0], torch[1], ratio[1], f"{r.others:.2f}"])  # fmt: skip
    return table(cols, rows, width, key=2, gap=1)
