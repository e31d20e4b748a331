"""Reproductions of published results: each re-derives a paper's (or the theory's) numbers with
gradlab's engine and checks them.

A reproduction NAME is two things:
    experiments/NAME.toml        its parameters: an optional grid of training runs (the usual [model],
                                 [task], [train], [sweep], [[part]] ...) run by the sweep runner, and a
                                 [reproduce] table of the check's own sizes, with [reproduce.quick]
                                 replacing some of them (and `set`, --set overrides of the runs) for --quick;
    gradlab/reproduce/NAME.py    TITLE and check(params, tables) -> (claims, figures): the measurements
                                 the runs' tables do not hold, the claims and the figures.

reproduce(NAME) runs both into results/NAME/ (results/NAME_quick/ for --quick): the runs' tables,
figures/*.png|pdf, claims.csv and manifest.json.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("pascanu2013", "glorot2010", "schoenholz2017", "lu2019", "adding", "balduzzi2017", "saxe2014", "pennington2017", "yang2019", "hanin2018")
TIME_LIMIT_S = 300.0  # each full reproduction: at most 5 minutes on 2 cores


def module(name: str) -> ModuleType:
    """The reproduction's module, or a one-line ValueError naming the allowed names."""
    if name not in NAMES:
        raise ValueError(f"reproduction {name!r}: must be one of {', '.join(NAMES)}")
    return importlib.import_module(f"gradlab.reproduce.{name}")
