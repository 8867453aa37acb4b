"""`python -m arsync` runs the command line."""

from arsync.cli import main

main()
