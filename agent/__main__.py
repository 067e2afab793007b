"""`python -m agent run …` runs a job attempt on the instance; `python -m agent parse …` parses a training log."""

import sys

from agent.cli import cli

if __name__ == "__main__":
    sys.exit(cli())
