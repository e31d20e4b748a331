"""The ensemble axis: R independent members of one model, computed as one.

With `ensemble=R` every parameter carries a leading axis of R members; every block and cell computes
with it by broadcasting (matmul over leading axes), so one code path serves R and no R. An input without
the member axis is shared by every member. Losses, clipping and the optimizers act per member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gradlab.nn import _checks

Array = np.ndarray
Rng = np.random.Generator | Sequence[np.random.Generator] | None


def check_count(name: str, values: Array, members: int) -> Array:
    """A per-member setting: a 1-D array of `members` values, or a one-line ValueError naming it."""
    if values.ndim != 1 or len(values) != members:
        raise ValueError(f"{name} must be one number or one per member ({members} values), got shape {values.shape}")
    return values


def check_ensemble(ensemble: int | None) -> int | None:
    """None (no member axis) or a positive number of members."""
    return None if ensemble is None else _checks.positive_int("ensemble", ensemble)


def stack(draw: Callable[[np.random.Generator], dict[str, Array]], rng: Rng, ensemble: int | None, dtype: np.dtype) -> dict[str, Array]:
    """A model's parameters: draw(rng) for one member, or R members' draws stacked on a leading axis,
    member r drawn from rng[r] when rng is a sequence of R generators (so that it equals a model built
    alone from that generator), else one member after the other from the one generator."""
    ensemble = check_ensemble(ensemble)
    if ensemble is None:
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be one numpy Generator (np.random.default_rng(seed)) without an ensemble, got {_describe(rng)}")
        params = draw(np.random.default_rng() if rng is None else rng)
        return {name: p.astype(dtype) for name, p in params.items()}
    if rng is None or isinstance(rng, np.random.Generator):
        one = np.random.default_rng() if rng is None else rng
        rngs = [one] * ensemble
    else:
        rngs = list(rng) if isinstance(rng, (list, tuple)) else [rng]
        if len(rngs) != ensemble or not all(isinstance(g, np.random.Generator) for g in rngs):
            raise ValueError(f"rng must be a numpy Generator, or a list of ensemble = {ensemble} Generators, got {_describe(rng)}")
    drawn = [draw(g) for g in rngs]
    return {name: np.stack([d[name] for d in drawn]).astype(dtype) for name in drawn[0]}


def _describe(rng) -> str:
    if isinstance(rng, (list, tuple)):
        kinds = {type(g).__name__ for g in rng}
        return f"a sequence of {len(rng)}" + ("" if kinds <= {"Generator"} else f" ({', '.join(sorted(kinds))}): {rng!r}")
    return repr(rng)


def lead(params: dict[str, Array], name: str, core_ndim: int) -> tuple[int, ...]:
    """The member axes of a parameter: its shape before its core_ndim own axes (() or (R,))."""
    shape = params[name].shape
    return shape[: len(shape) - core_ndim]


def check_input(x: Array, dtype: np.dtype, ensemble: int | None, tail: tuple, what: str) -> Array:
    """x as an array of the model's dtype: shape tail (shared by all members), or (R, *tail) with an ensemble."""
    x = np.asarray(x, dtype=dtype)
    if ensemble is not None and x.ndim == len(tail) + 1:
        _checks.array_shape("x", x, (ensemble, *tail), f"(R, {what[1:]}" if what.startswith("(") else what)
        return x
    _checks.array_shape("x", x, tail, what if ensemble is None else f"{what} or (R, {what[1:]}")
    return x


def of(array: Array, member: int | None) -> Array:
    """Member `member`'s slice of an array (the array itself for member None)."""
    if member is None:
        return array
    if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not 0 <= member < len(array):
        raise ValueError(f"member must be an integer in [0, {len(array) - 1}] (the ensemble's members), got {member!r}")
    return array[member]


def copy_in(target: Array, value, member: int | None, src: str, dst: str) -> None:
    """Copy value (a tensor or an array) into target (or member `member`'s slice of it), checking its shape."""
    into = of(target, member)
    value = np.asarray(value, dtype=target.dtype)
    _checks.array_shape(src, value, into.shape, f"{dst}.shape")
    into[...] = value
