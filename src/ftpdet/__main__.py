"""`python -m ftpdet ...` (and `torchrun -m ftpdet ...`) run the CLI."""

from ftpdet.cli import main

main()
