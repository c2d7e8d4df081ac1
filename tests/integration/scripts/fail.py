"""Fails the way user code does: a traceback whose last line says why."""

import sys

print("starting")
print("about to fail", file=sys.stderr)
raise ValueError("column 'price' has 3 negative values")
