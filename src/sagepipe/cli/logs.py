"""Where log records go: stderr, through rich's log handler, which loads with the first record.

Most commands log nothing (warnings only, unless ``--debug``): they do without importing
rich's logging module and its renderer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sagepipe.cli.consoles import err, real_console

if TYPE_CHECKING:
    from rich.logging import RichHandler

# Their retry warnings are noise: the error that follows says what went wrong.
NOISY = ("botocore", "boto3", "urllib3", "s3transfer")


class DeferredRichHandler(logging.Handler):
    """A handler that makes a rich ``RichHandler`` on the error console for its first record
    and passes it every record, formatted by this handler's formatter."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._handler: RichHandler | None = None

    def real(self) -> RichHandler:
        """The rich handler behind this one (made on first use)."""
        if self._handler is None:
            from rich.logging import RichHandler

            handler = RichHandler(
                console=real_console(err), show_path=False, show_time=False, markup=False
            )
            handler.setFormatter(self.formatter)
            self._handler = handler
        return self._handler

    def emit(self, record: logging.LogRecord) -> None:
        """Render ``record`` with rich (``handle`` holds this handler's lock meanwhile)."""
        self.real().emit(record)


def configure_logging(debug: bool) -> None:
    """Warnings (everything with ``debug``) to stderr; the AWS libraries' only when errors."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[DeferredRichHandler()],
        force=True,
    )
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.ERROR)
