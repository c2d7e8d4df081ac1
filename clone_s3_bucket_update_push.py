"""Pull the bucket into a local folder, or push local changes back.

A thin wrapper kept for the seed project's habit:

    python clone_s3_bucket_update_push.py --mode=s3_pull [--dest DIR] [sagepipe bucket pull options]
    python clone_s3_bucket_update_push.py --mode=s3_push [DIR] [sagepipe bucket push options]
"""

import sys

from sagepipe.cli.main import run_cli

MODES = {"s3_pull": "pull", "s3_push": "push"}


def main(argv: list[str]) -> int:
    mode = None
    rest = []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--mode="):
            mode = arg.split("=", 1)[1]
        elif arg == "--mode":
            mode = next(args, None)
        else:
            rest.append(arg)
    if mode not in MODES:
        print(
            "usage: clone_s3_bucket_update_push.py --mode=s3_pull|s3_push [options]",
            file=sys.stderr,
        )
        return 1
    return run_cli(["bucket", MODES[mode], *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
