"""`python -m clipseek` runs the command line."""

from clipseek.cli import main

main()
