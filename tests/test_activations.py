"""The leaky ReLU's forward against its definition, max(z, slope z) with slope z taken only where z < 0,
bit for bit (values, NaNs and the sign of zero), for every input a float can hold: its fast path
(np.maximum, taken when every slope is > 0) may differ from the definition nowhere, and a slope of 0
keeps leaky_relu(inf) = inf (0 inf is NaN). Slopes are a number or an ensemble's one per member, whose
ReLU members keep ReLU's own forward."""

import numpy as np
from conftest import ENGINE, describe
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradlab.nn import activations

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e308, -1e308])


def definition(z: np.ndarray, slope) -> np.ndarray:
    """max(z, slope z) for 0 <= slope <= 1: z where z >= 0 (or NaN), slope z where z < 0."""
    out = z.copy()
    np.multiply(z, slope, out=out, where=z < 0)
    return out


def same_bits(actual: np.ndarray, expected: np.ndarray) -> bool:
    return actual.shape == expected.shape and actual.dtype == expected.dtype and actual.tobytes() == expected.tobytes()


slopes = st.floats(0.0, 1.0, allow_subnormal=True)
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)


@ENGINE
@given(
    z=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=floats),
    slope=slopes, dtype=st.sampled_from([np.float64, np.float32]),
)  # fmt: skip
def test_the_leaky_relu_equals_its_definition_bit_for_bit(z, slope, dtype):
    act = activations.leaky_relu(slope)
    with np.errstate(all="ignore"):
        z = np.concatenate([z.ravel(), SPECIALS]).astype(dtype)  # 1e308 overflows float32 to inf
        got, want = act.forward(z), definition(z, slope)
        into = z.copy()
        act.forward(into, out=into)
    for name, a in (("forward", got), ("out=z", into)):
        assert same_bits(a, want), describe(f"leaky_relu({slope!r}) {name} in {np.dtype(dtype).name}", a, want)


@ENGINE
@given(
    z=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=4, max_side=5), elements=floats),
    members=st.lists(st.one_of(st.just("relu"), slopes), min_size=1, max_size=4),
)  # fmt: skip
def test_an_ensembles_leaky_relus_and_relus_equal_each_member_alone(z, members):
    """Forward (also in place), and phi' from a, of an ensemble whose member r is members[r] (a slope, or
    "relu"), along z's leading axis at any rank (an MLP's (R, N, H), a recurrent model's (R, T, N, H)):
    each member's slice bit for bit its activation alone, ReLU's 0 (not -0) below zero and at -inf."""
    kinds = [members[r % len(members)] for r in range(z.shape[0])]
    alone = [activations.RELU if k == "relu" else activations.leaky_relu(k) for k in kinds]
    act = activations.leaky(np.array([a.slope for a in alone]), relu=[r for r, k in enumerate(kinds) if k == "relu"])
    z[..., 0] = SPECIALS[np.arange(z[..., 0].size) % len(SPECIALS)].reshape(z[..., 0].shape)
    with np.errstate(all="ignore"):
        got, into = act.forward(z), z.copy()
        act.forward(into, out=into)
        d = act.derivative(got)
        for r, one in enumerate(alone):
            want = one.forward(z[r])
            for name, a in (("forward", got[r]), ("out=z", into[r]), ("phi'", d[r])):
                expected = one.derivative(want) if name == "phi'" else want
                assert same_bits(a, expected), describe(f"member {r} ({kinds[r]!r}) {name}", a, expected)


def test_a_slope_of_zero_keeps_inf_and_gives_negative_zero_below_zero():
    with np.errstate(all="ignore"):
        a = activations.leaky_relu(0.0).forward(np.array([np.inf, -np.inf, -2.0, 3.0]))
    assert a[0] == np.inf and np.isnan(a[1]) and a[2] == 0 and np.signbit(a[2]) and a[3] == 3.0, a
