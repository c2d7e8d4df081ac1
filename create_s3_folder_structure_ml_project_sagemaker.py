"""Create the bucket's folder structure (app/, app/src/, other/, other/logs/, ...).

A thin wrapper kept for the seed project's habit: it runs `sagepipe bucket init`.
Credentials and endpoint come from .env / the environment; --bucket overrides the bucket.
"""

import sys

from sagepipe.cli.main import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(["bucket", "init", *sys.argv[1:]]))
