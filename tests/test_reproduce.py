"""The reproduction framework (gradlab.reproduce: claims, the driver, `gradlab reproduce`), on a
made-up reproduction whose check is known; the five real ones have their own test files."""

from __future__ import annotations

import json
import math
import types

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from typer.testing import CliRunner

from gradlab import reproduce
from gradlab.cli import app
from gradlab.reproduce import claims, driver
from gradlab.reproduce.claims import Claim
from gradlab.sweep import ConfigError

# ---------------------------------------------------------------- claims


@pytest.mark.parametrize(
    "made, passed",
    [
        (Claim.within("x", "s", 1 / 3, 0.05, 0.383), True),
        (Claim.within("x", "s", 1 / 3, 0.05, 0.384), False),
        (Claim.within("x", "s", 1 / 3, 0.05, math.nan), False),
        (Claim.relative("x", "s", 0.8, 0.01, 0.807), True),
        (Claim.relative("x", "s", 0.8, 0.01, 0.809), False),
        (Claim.at_least("x", "s", 0.7, 0.7), True),
        (Claim.at_least("x", "s", 0.7, 0.69), False),
        (Claim.at_most("x", "s", 0.02, 0.021), False),
        (Claim.count("x", "s", 4, 4, 5), True),
        (Claim.count("x", "s", 4, 3, 5), False),
    ],
)
def test_claim_constructors_decide_pass(made, passed):
    assert made.passed is passed, f"{made}: expected pass = {passed}"


def test_claims_table_and_csv_columns():
    found = [Claim.within("ratio", "eq. 1", 1 / 3, 0.05, 0.30), Claim.count("diverges", "sec. 3", 4, 2, 5)]
    df = claims.frame(found)
    assert list(df.columns) == ["claim", "source", "expected", "tolerance", "measured", "pass", "value"]
    assert df["pass"].tolist() == [True, False] and df["measured"].tolist() == ["0.300", "2 of 5 seeds"]
    assert Claim.count("x", "s", 2, 3, 3, detail="max 0.01").measured == "3 of 3 seeds (max 0.01)"
    text = claims.table(found).splitlines()
    assert text[2].endswith("PASS") and text[3].endswith("FAIL") and "2 of 5 seeds" in text[3]


# ---------------------------------------------------------------- a made-up reproduction

TOML = """
name = "fake"
description = "a made-up reproduction"
[model]
kind = "mlp"
depth = 2
width = 8
[train]
steps = 6
log_every = 3
[sweep]
seed = [0, 1]
[reproduce]
expected = 6
networks = 100
[reproduce.quick]
networks = 10
set = ["train.steps=3"]
"""


def _fake_check(params, tables):
    """Claims about the runs the driver ran: their step count and the params it passed."""
    steps = int(tables["steps"].groupby("run_id")["step"].max().iloc[0]) + 1
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    found = [Claim.within("steps run", "the config", params["expected"], 0, steps, digits=0),
             Claim.at_least("networks", "the config", 1, params["networks"])]  # fmt: skip
    return found, {"fake_figure": fig}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    (tmp_path / "fake.toml").write_text(TOML)
    module = types.SimpleNamespace(TITLE="Fake 2026: a made-up result", check=_fake_check)
    monkeypatch.setattr(driver, "experiments_dir", lambda: tmp_path)
    monkeypatch.setattr(driver, "module", lambda name: module)
    monkeypatch.setattr(reproduce, "NAMES", (*reproduce.NAMES, "fake"))
    monkeypatch.setattr(reproduce, "module", lambda name: module)
    return tmp_path


def test_load_applies_quick_params_and_overrides(fake):
    full, quick = driver.load("fake"), driver.load("fake", quick=True)
    assert full.params == {"expected": 6, "networks": 100} and quick.params == {"expected": 6, "networks": 10}
    assert {c["train.steps"] for c in full.experiment.grid()} == {6}
    assert {c["train.steps"] for c in quick.experiment.grid()} == {3}
    assert len(full.experiment.grid()) == 2


def test_load_refuses_quick_params_the_check_does_not_have(fake):
    (fake / "fake.toml").write_text(TOML.replace("networks = 10\n", "netwroks = 10\n"))
    with pytest.raises(ConfigError, match=r"^reproduce\.quick\.netwroks: not a \[reproduce\] parameter; allowed: expected, networks$"):
        driver.load("fake", quick=True)


def test_a_reproduction_without_runs_has_no_experiment_and_gradlab_run_refuses_it(fake):
    (fake / "fake.toml").write_text('name = "fake"\n[reproduce]\nexpected = 1\n')
    assert driver.load("fake").experiment is None
    result = CliRunner().invoke(app, ["run", str(fake / "fake.toml")])
    assert result.exit_code == 2 and "use gradlab reproduce fake" in result.output


def test_reproduce_writes_claims_figures_and_manifest(fake):
    out = fake / "out"
    outcome = driver.reproduce("fake", out=out, executor="serial", echo=lambda s: None, progress=False)
    assert outcome.passed and outcome.out == out
    df = pd.read_csv(out / "claims.csv")
    assert df["claim"].tolist() == ["steps run", "networks"] and df["pass"].all()
    assert df["value"].tolist() == [6.0, 100.0]
    assert {p.name for p in (out / "figures").iterdir() if not p.name.startswith(".")} == {"fake_figure.png", "fake_figure.pdf"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reproduction"] == "fake" and manifest["quick"] is False
    assert manifest["params"] == {"expected": 6, "networks": 100}
    assert manifest["claims"] == {"total": 2, "passed": 2} and manifest["runs"]["total"] == 2
    assert manifest["git_commit"] and manifest["figures"] == ["fake_figure"]
    assert len(pd.read_parquet(out / "runs.parquet")) == 2  # the runs' tables, as gradlab run writes them


def test_cli_exits_1_when_a_claim_fails_and_prints_the_table(fake):
    # --quick runs 3 steps; the claim expects 6, so it fails and the command says so
    result = CliRunner().invoke(app, ["reproduce", "fake", "--quick", "--out", str(fake / "q"), "--executor", "serial", "--quiet"])
    assert result.exit_code == 1, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("steps run"))
    assert row.split()[-3:] == ["+-0", "3", "FAIL"], row
    assert "1 of 2 claims reproduced" in result.output
    assert json.loads((fake / "q" / "manifest.json").read_text())["quick"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "glorot"], "error: reproduction 'glorot': must be one of pascanu2013, glorot2010, schoenholz2017, lu2019, adding, balduzzi2017, saxe2014, pennington2017, yang2019, hanin2018"),
        (["reproduce"], "error: give a reproduction NAME or --list; NAME is one of pascanu2013, glorot2010, schoenholz2017, lu2019, adding, balduzzi2017, saxe2014, pennington2017, yang2019, hanin2018"),
        (["reproduce", "adding", "--executor", "threads"], "error: --executor 'threads': must be one of serial, process, dask"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.strip() == message
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("limit_s, verdict", [(300.0, "within the limit"), (0.0, "OVER the limit")])
def test_cli_full_run_passes_and_says_whether_it_kept_the_time_limit(fake, monkeypatch, limit_s, verdict):
    monkeypatch.setattr(reproduce, "TIME_LIMIT_S", limit_s)
    args = ["reproduce", "fake", "--out", str(fake / "full"), "--executor", "serial", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 of 2 claims reproduced in" in result.output and verdict in result.output, result.output
