"""`python -m gradlab` runs the CLI."""

from gradlab.cli import main

main()
