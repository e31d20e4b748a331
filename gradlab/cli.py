"""The `gradlab` command line. Thin: it parses, calls the library, prints."""

from __future__ import annotations

import typer

import gradlab

app = typer.Typer(
    name="gradlab",
    help="A lab for seeing, measuring and explaining vanishing, exploding and dying gradients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradlab {gradlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """A lab for seeing, measuring and explaining vanishing, exploding and dying gradients."""


@app.command()
def gradcheck(
    seed: int = typer.Option(0, help="Seed of the random problems."),
) -> None:
    """Check every backward (MLP, RNN, LSTM x activation x loss, full and truncated BPTT) against
    central differences in float64; exit 1 if any relative error exceeds 1e-7.

    Example: gradlab gradcheck --seed 3
    """
    from gradlab.nn.gradcheck import TOLERANCE, run_suite

    rows = list(run_suite(seed))
    typer.echo(_gradcheck_table(rows))
    bad = [r for r in rows if max(r.max_rel_error, r.direction_rel_error) > TOLERANCE]
    if bad:
        typer.echo(f"FAIL: {len(bad)} of {len(rows)} checks exceed {TOLERANCE:g}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {len(rows)} checks, worst relative error {max(max(r.max_rel_error, r.direction_rel_error) for r in rows):.1e} <= {TOLERANCE:g}")


def _gradcheck_table(rows: list) -> str:
    """One line per model and activation, one column per loss: the worst relative error over the
    parameters and the random direction."""
    from gradlab.nn.losses import NAMES as LOSSES

    cells: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        cells.setdefault((r.model, r.activation), {})[r.loss] = max(r.max_rel_error, r.direction_rel_error)
    head = f"{'model':<18}{'activation':<12}" + "".join(f"{name:>15}" for name in LOSSES)
    lines = [head, "-" * len(head)]
    for (model, act), by_loss in cells.items():
        lines.append(f"{model:<18}{act:<12}" + "".join(f"{by_loss[name]:>15.1e}" for name in LOSSES))
    return "\n".join(lines)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
