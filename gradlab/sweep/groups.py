"""Which runs of a sweep train together as one ensemble, in chunks of what size, and in which order.

Runs may share an ensemble when they differ only in the fields gradlab.schema.ENSEMBLE_FIELDS names
(seed, lr, momentum, clipping, init kind and scales, steps, what is logged, the part), or in ReLU against
leaky ReLU (a ReLU member is a leaky ReLU of slope 0 whose forward is ReLU's own), and the ensemble
trains their model (gradlab.ensemble.supported: every float64 run). A group is split into chunks of at most
`chunk_size` members (memory: CHUNK_BYTES per chunk; speed: MAX_MEMBERS, beyond which the
per-member work the ensemble does member by member dominates) and, for a pool of workers, into enough
chunks that every worker has work. Work items (chunks, and runs alone) go out largest first by their
estimated cost, so the last minutes of a sweep are not one long run on one core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from gradlab.schema import ENSEMBLE_FIELDS, FIELDS

Config = dict[str, Any]
MAX_MEMBERS = 64  # members per chunk at most
CHUNK_BYTES = 1 << 30  # memory one chunk's arrays may take (estimate), 1 GiB
SHAPE_FIELDS = tuple(key for key in FIELDS if key not in ENSEMBLE_FIELDS)  # equal within an ensemble
# cost model (seconds, roughly, on one core): per run its fixed work (tables, diagnosis, writing), per
# step and weight layer (or cell layer and time step) the calls' overhead, per step and member the work
# done member by member (batch, loss, clipping), per multiply-add the arithmetic
RUN_S, CALL_S, MEMBER_STEP_S, MAC_S = 0.05, 60e-6, 40e-6, 0.5e-9
SPLIT_S = 0.5  # a group is cut for the workers only into pieces of at least this estimate (a worker's start)


ACTIVATION_FIELDS = ("model.activation", "model.output_activation")
ONE_ACTIVATION = {"relu": "leaky_relu"}  # a ReLU member is a leaky ReLU of slope 0 (gradlab.ensemble.member_activation)


def key(config: Config) -> tuple:
    """What every member of an ensemble shares: the values of every field not in ENSEMBLE_FIELDS (ReLU and
    leaky ReLU counted as one activation)."""
    return tuple(ONE_ACTIVATION.get(config[k], config[k]) if k in ACTIVATION_FIELDS else config[k] for k in SHAPE_FIELDS)


def group(configs: Iterable[Config], enabled: bool = True) -> list[list[Config]]:
    """The configs in groups of one key (in order of first appearance); a config the ensemble does not
    train, or every config when not enabled, is a group of its own."""
    from gradlab import ensemble  # the train layer: numpy and the engine, loaded when a sweep runs

    groups: dict[tuple, list[Config]] = {}
    alone: list[list[Config]] = []
    for config in configs:
        if enabled and ensemble.supported(config):
            groups.setdefault(key(config), []).append(config)
        else:
            alone.append([config])
    return [*groups.values(), *alone]


SIZED_INPUTS = ("teacher_student", "gaussian_blobs", "file")  # tasks whose input size is task.input_size (file: the file's)


def layer_sizes(config: Config) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each weight matrix of the config's model (the input size as the task has it:
    an estimate for tasks whose size the config does not hold)."""
    width, kind = config["model.width"], config["model.kind"]
    inputs = config["task.input_size"] if config["task.name"] in SIZED_INPUTS else 2
    if kind == "mlp":
        sizes = [inputs] + [width] * config["model.depth"] + [1]
        return list(zip(sizes[:-1], sizes[1:]))
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    cells = [(inputs if j == 0 else width, gates * width) for j in range(config["model.layers"])]
    return [*cells, *((width, gates * width) for _ in cells), (width, 1)]


def cost(configs: list[Config]) -> float:
    """Estimated seconds of one work item: its runs' fixed work, then per step the calls (once for the
    ensemble), every member's own work and its arithmetic (forward and backward: 3 products per weight)."""
    first = configs[0]
    sizes = layer_sizes(first)
    steps = max(c["train.steps"] for c in configs)
    T = first["task.T"] if first["model.kind"] != "mlp" else 1
    macs = 3 * first["train.batch"] * T * sum(i * o for i, o in sizes)
    return len(configs) * RUN_S + steps * (len(sizes) * T * CALL_S + len(configs) * (MEMBER_STEP_S + macs * MAC_S))


def member_bytes(config: Config) -> int:
    """Estimated bytes of one member: its parameters with their gradient, optimizer state and snapshot
    (x 5), and its batch's and probe set's activations with their gradients (x 3, float64)."""
    sizes = layer_sizes(config)
    params = sum(i * o + o for i, o in sizes)
    T = config["task.T"] if config["model.kind"] != "mlp" else 1
    units = sum(o for _, o in sizes) * T
    return 8 * (5 * params + 3 * units * (config["train.batch"] + config["train.probe_size"]))


def chunk_size(group: list[Config], workers: int = 1, items: int = 1) -> int:
    """Members per chunk of a group: at most MAX_MEMBERS and what fits in CHUNK_BYTES; with several
    workers and fewer than two groups per worker (`items` groups in the sweep), small enough to make
    two work items per worker, but no piece estimated under SPLIT_S (starting workers for small pieces
    would cost more than they save)."""
    size = max(1, min(MAX_MEMBERS, len(group), CHUNK_BYTES // max(1, member_bytes(group[0]))))
    if workers > 1 and items < 2 * workers:
        pieces = min(math.ceil(2 * workers / items), max(1, int(cost(group) // SPLIT_S)))
        size = min(size, math.ceil(len(group) / pieces))
    return size


def plan(configs: list[Config], enabled: bool = True, workers: int = 1) -> list[list[Config]]:
    """The sweep's work items: its groups cut into chunks (see chunk_size), largest estimated cost first
    (a stable sort: equal costs keep the grid's order)."""
    groups = group(configs, enabled)
    items: list[list[Config]] = []
    for members in groups:
        size = chunk_size(members, workers, len(groups))
        items.extend(members[i : i + size] for i in range(0, len(members), size))
    return sorted(items, key=cost, reverse=True)
