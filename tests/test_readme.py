"""The README's Python example runs and prints what the README says it prints."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_prints_what_the_readme_shows():
    text = README.read_text()
    match = re.search(r"```python\n((?:(?!```).)*)```\n\nprints\n\n```\n(.*?)```", text, re.S)
    assert match, "README has no ```python block followed by 'prints' and its output"
    code, expected = match.groups()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    assert out.getvalue() == expected, f"README example printed:\n{out.getvalue()}\nREADME says:\n{expected}"


def test_readme_config_reference_is_the_schema():
    from gradlab.schema import reference

    assert reference() in README.read_text(), "README's config reference differs from gradlab.schema.reference()"


def test_readme_claims_table_is_the_committed_results():
    import pandas as pd

    from gradlab.reproduce import NAMES, claims

    root = README.parent / "results"
    results = {name: pd.read_csv(root / name / "claims.csv", keep_default_na=False) for name in NAMES}
    assert claims.markdown(results) in README.read_text(), (
        "README's claims table differs from results/*/claims.csv; print gradlab.reproduce.claims.markdown(...) and paste it"
    )
