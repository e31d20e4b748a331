"""A claim of a paper (or of the theory), the number gradlab measured for it, and whether it holds.

Every reproduction returns a list of Claims; `gradlab reproduce` prints them as a table and writes
them to results/<name>/claims.csv with the columns claim, source, expected, tolerance, measured, pass.
Expected, tolerance and measured are text, so that "1/3", "+-0.05", "4 of 5 seeds" read as written in
the paper; `value` keeps the measured number for programs (NaN where the measurement is a count).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from gradlab.sweep import terminal
from gradlab.sweep.terminal import MIN_WIDTH, Col

COLUMNS = ("claim", "source", "expected", "tolerance", "measured", "pass", "value")


@dataclass(frozen=True)
class Claim:
    claim: str  # what is claimed, one line
    source: str  # where: paper, section, figure or equation
    expected: str  # the paper's or the theory's number
    tolerance: str  # how close counts as reproduced
    measured: str  # what gradlab measured, formatted
    passed: bool
    value: float = math.nan  # the measured number, unformatted

    @classmethod
    def within(cls, claim: str, source: str, expected: float, tolerance: float, measured: float,
               digits: int = 3, expected_text: str | None = None) -> "Claim":  # fmt: skip
        """|measured - expected| <= tolerance (false for NaN)."""
        ok = bool(abs(measured - expected) <= tolerance)
        return cls(claim, source, expected_text or f"{expected:.{digits}f}", f"+-{tolerance:.2g}",
                   f"{measured:.{digits}f}", ok, float(measured))  # fmt: skip

    @classmethod
    def relative(cls, claim: str, source: str, expected: float, rtol: float, measured: float, digits: int = 4) -> "Claim":
        """|measured / expected - 1| <= rtol."""
        ok = bool(abs(measured / expected - 1.0) <= rtol)
        return cls(claim, source, f"{expected:.{digits}g}", f"{rtol:.0%}" if rtol >= 0.01 else f"{rtol:g} rel.",
                   f"{measured:.{digits}g}", ok, float(measured))  # fmt: skip

    @classmethod
    def at_least(cls, claim: str, source: str, bound: float, measured: float, digits: int = 3) -> "Claim":
        return cls(claim, source, f">= {bound:g}", "-", f"{measured:.{digits}f}", bool(measured >= bound), float(measured))

    @classmethod
    def at_most(cls, claim: str, source: str, bound: float, measured: float, digits: int = 3) -> "Claim":
        return cls(claim, source, f"<= {bound:g}", "-", f"{measured:.{digits}f}", bool(measured <= bound), float(measured))

    @classmethod
    def count(cls, claim: str, source: str, need: int, hits: int, of: int, what: str = "seeds", detail: str = "") -> "Claim":
        """At least `need` of `of` trials show it; `detail` (e.g. the deciding number) follows the count."""
        measured = f"{hits} of {of} {what}" + (f" ({detail})" if detail else "")
        return cls(claim, source, f">= {need} of {of} {what}", "-", measured, hits >= need, float(hits))


def frame(claims: list[Claim]) -> pd.DataFrame:
    """The claims as the claims.csv table (column `pass`, not the Python-safe `passed`)."""
    rows = [{**asdict(c), "pass": c.passed} for c in claims]
    for row in rows:
        del row["passed"]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def table(claims: list[Claim], width: int = MIN_WIDTH, colour: bool = False) -> str:
    """The claims as a text table at most `width` columns wide (gradlab.sweep.terminal): claim, expected,
    tolerance, measured, PASS/FAIL, each cell wrapped between words (a number is never cut), the numbers on
    the claim's first line; colour: PASS green and FAIL red (a terminal's escape codes)."""
    cols = [Col("claim", wrap=True), Col("expected", wrap=True), Col("tolerance", wrap=True), Col("measured", wrap=True),
            Col("result", styles=(("PASS", "green"), ("FAIL", "bold red")))]  # fmt: skip
    rows = [(c.claim, c.expected, c.tolerance, c.measured, "PASS" if c.passed else "FAIL") for c in claims]
    return terminal.table(cols, rows, width, colour=colour)


def markdown(results: dict[str, pd.DataFrame]) -> str:
    """The README's claims table: one row per claim of every reproduction, from their claims.csv."""
    rows = ["| reproduction | claim | expected | tolerance | measured | result |", "| --- | --- | --- | --- | --- | --- |"]
    for name, df in results.items():
        for r in df.itertuples(index=False):
            cells = [_cell(v) for v in (name, r.claim, r.expected, r.tolerance, r.measured)]
            rows.append(f"| {' | '.join(cells)} | {'pass' if r[5] else '**FAIL**'} |")
    return "\n".join(rows)


def _cell(value: object) -> str:
    """A Markdown table cell: a | in the text would end the cell."""
    return str(value).replace("|", "\\|")
