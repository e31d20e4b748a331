"""gradlab show: the worst runs of each pathology first, told apart by the fields they differ in, within 80
columns, every number whole."""

import pandas as pd

from gradlab.sweep import summary


def runs_table():
    rows = []
    for k, (depth, change) in enumerate([(4, -2.0), (32, -26.0), (8, -6.0), (16, -12.5)]):
        rows.append(dict(run_id=f"v{k:011d}", part="depth", model="mlp", depth=depth, activation="sigmoid", seed=0,
                         status="ok", diagnosis="vanishing", delta_log10_change=change, dh_log10_change=float("nan"),
                         dead_frac=0.0, diverged_step=-1, final_loss=0.1, baseline_loss=0.5,
                         diagnosis_text=f"delta_norm falls 10^{change:.1f} over {depth} layers " + "and a long tail " * 6))
    for k, step in enumerate([191, 12, 163]):
        rows.append(dict(run_id=f"d{k:011d}", part="clipping", model="rnn", depth=4, activation="tanh", seed=k,
                         status="diverged", diagnosis="diverged", delta_log10_change=float("nan"), dh_log10_change=float("nan"),
                         dead_frac=0.0, diverged_step=step, final_loss=float("nan"), baseline_loss=0.5,
                         diagnosis_text=f"the gradient norm is inf at step {step}"))
    return pd.DataFrame(rows)


def test_worst_cases_come_first_with_the_fields_they_differ_in():
    text = summary.show({"runs": runs_table()}, worst=3, width=80)
    vanishing = text.split("vanishing:", 1)[1].split("\n\n")[0]
    order = [line.split()[0] for line in vanishing.splitlines() if line.startswith("  v")]
    assert order == ["v00000000001", "v00000000003", "v00000000002"], vanishing  # -26, -12.5, -6 decades
    assert "4 runs; the 3 worst by decades lost" in vanishing
    assert "part=depth depth=32" in vanishing and "seed=" not in vanishing  # seeds do not vary in that part
    diverged = text.split("diverged:", 1)[1]
    assert [line.split()[0] for line in diverged.splitlines() if line.startswith("  d")] == [
        "d00000000001", "d00000000002", "d00000000000"]  # steps 12, 163, 191: the earliest first  # fmt: skip
    assert "part=clipping seed=1" in diverged


def test_show_fits_80_columns_and_cuts_no_number():
    text = summary.show({"runs": runs_table()}, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "10^-26.0" in text and "10^-12.5" in text
