"""The CLI's two consoles: results on stdout, progress and errors on stderr.

Piped output (CI logs, files) gets wide lines instead of rich's 80-column default.
"""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
