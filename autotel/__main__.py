"""`python -m autotel` is the same as the `autotel` command."""

from autotel.cli import main

main()
