"""`python -m sparsecli` runs the command line."""

from sparsecli.cli import main

main()
