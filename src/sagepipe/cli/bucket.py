"""``sagepipe bucket``: the bucket's folder layout, pull, push, ls and put."""

from __future__ import annotations

import functools
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sagepipe.cli.consoles import console, err, escape, real_console
from sagepipe.cli.options import StoreKind, StoreOpt
from sagepipe.cli.state import settings
from sagepipe.config import Settings, check_bucket_name
from sagepipe.errors import ConfigError, UsageError

if TYPE_CHECKING:  # the store loads when a bucket command runs, not for `--help`
    from collections.abc import Callable

    from sagepipe.storage import ObjectStore
    from sagepipe.sync.transfer import SyncReport

bucket_app = typer.Typer(
    help="Manage the bucket: layout, pull, push.", no_args_is_help=True, rich_markup_mode=None
)


class Prefer(StrEnum):
    """Which side wins a conflict."""

    local = "local"
    remote = "remote"


@bucket_app.command("put")
def put(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A local file.")],
    uri: Annotated[str, typer.Argument(help="Where it goes: s3://bucket/key.")],
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when the object exists.")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Upload one local file to an s3:// URI."""
    if not source.is_file():
        raise UsageError(f"{source} is not a file")
    bucket, key = _parse_uri(uri)
    if not key or key.endswith("/"):
        raise UsageError(f"{uri!r} names no object; give s3://bucket/key")
    target = _store(settings(ctx), store)
    if if_missing and target.head(uri) is not None:
        err.print(f"{uri} already exists; left as is", highlight=False, markup=False)
        return
    target.ensure_bucket(bucket)
    target.put_file(uri, source)
    err.print(f"uploaded {source} -> {uri}", highlight=False, markup=False)


def _bucket(s: Settings, bucket: str | None) -> str:
    if bucket is None:
        return s.bucket
    try:
        return check_bucket_name(bucket)
    except ConfigError as exc:
        raise UsageError(f"--bucket: {exc}") from None


def _store(s: Settings, store: StoreKind | None) -> ObjectStore:
    return _open_store(s, store.value if store else None)


@bucket_app.command("init")
def init(
    ctx: typer.Context,
    bucket: Annotated[
        str | None, typer.Option(help="Bucket name (default: the configured one).")
    ] = None,
    store: Annotated[
        StoreKind | None,
        typer.Option(
            help="local or s3 (default: s3 when an endpoint or credentials are set, else the configured store)."
        ),
    ] = None,
) -> None:
    """Create the bucket when missing and the seed's folders (app/, other/logs/, ...)."""
    from sagepipe.sync.bucket_init import init_bucket

    s = settings(ctx)
    name = _bucket(s, bucket)
    result = init_bucket(_open_store(s, _store_kind(s, store)), name, s.bucket_folders)
    state = "created" if result.bucket_created else "exists"
    console.print(f"bucket {name}: {state}")
    for key in result.created:
        console.print(f"  [green]+[/] {escape(key)}")
    for key in result.existing:
        console.print(f"  [dim]= {escape(key)}[/]")


@bucket_app.command("ls")
def ls(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="Key prefix.")] = "",
    bucket: Annotated[str | None, typer.Option(help="Bucket name.")] = None,
    store: StoreOpt = None,
) -> None:
    """List objects under a prefix."""
    s = settings(ctx)
    name = _bucket(s, bucket)
    total = 0
    for info in _open_store(s, _store_kind(s, store)).list(f"s3://{name}/{prefix}"):
        console.print(f"{info.size:>12,}  {info.key}", highlight=False, markup=False)
        total += 1
    err.print(f"{total} objects")


def _store_kind(s: Settings, store: StoreKind | None) -> str:
    if store:
        return store.value
    # Bucket tooling is about the real bucket: S3 as soon as an endpoint or credentials exist.
    if s.endpoint_url or s.env.get("AWS_ACCESS_KEY_ID") or s.env.get("AWS_PROFILE"):
        return "s3"
    return s.store


def _transfer(
    s: Settings,
    direction: str,
    folder: Path,
    prefix: str,
    bucket: str | None,
    store: StoreKind | None,
    delete: bool,
    max_delete: int | None,
    dry_run: bool,
    include: list[str],
    exclude: list[str],
    prefer: Prefer | None,
    mirror: bool = False,
) -> None:
    from sagepipe.sync.plan import Options
    from sagepipe.sync.scan import Filters
    from sagepipe.sync.transfer import sync

    if folder.exists() and not folder.is_dir():
        where = "--dest" if direction == "pull" else "FOLDER"
        raise UsageError(f"{where} {folder}: is a file; name a folder")
    if direction == "push" and not folder.exists():
        raise UsageError(f"{folder}: no such folder")
    name = _bucket(s, bucket)
    target = _open_store(s, _store_kind(s, store))
    options = Options(
        delete=delete,
        max_delete=max_delete,
        prefer=prefer.value if prefer else None,
        mirror=mirror,
    )
    filters = Filters.build(include, exclude, folder if folder.is_dir() else None)
    run = functools.partial(
        sync, target, name, prefix, folder, direction, options, filters, dry_run=dry_run
    )
    bar = not dry_run and sys.stderr.isatty()  # no bar to draw: rich's progress not loaded
    report = _with_progress_bar(run, direction) if bar else run()
    _print_report(report, direction, folder, f"s3://{name}/{prefix.strip('/')}", dry_run)
    if not report.ok:
        raise typer.Exit(1)


def _with_progress_bar(run: Callable[..., SyncReport], direction: str) -> SyncReport:
    """``run(progress=..., on_plan=...)`` under a transfer progress bar on stderr."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from sagepipe.sync.plan import TRANSFER

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=real_console(err),  # rich enters the console itself: the real one
        transient=True,
    ) as bar:
        task = bar.add_task(direction, total=None)
        return run(
            progress=lambda n: bar.advance(task, n),
            on_plan=lambda plan: bar.update(task, total=sum(a.size for a in plan.of(TRANSFER))),
        )


def _print_report(
    report: SyncReport, direction: str, folder: Path, remote: str, dry_run: bool
) -> None:
    """Every action (or, for a dry run, every planned one), then the summary line."""
    from sagepipe.sync.plan import CONFLICT, DELETE, MKDIR, REFUSED, SKIP, TRANSFER

    total = sum(a.size for a in report.plan.of(TRANSFER))
    verb = "would " if dry_run else ""
    arrow = "->" if direction == "push" else "<-"
    move = "upload" if direction == "push" else "download"
    lines = [f"{verb}{move} {a.path} ({a.reason})" for a in report.plan.of(TRANSFER)]
    lines += [f"{verb}create folder {a.path}" for a in report.plan.of(MKDIR)]
    lines += [f"{verb}delete {a.path}" for a in report.plan.of(DELETE)]
    lines += [f"skip {a.path}: {a.reason}" for a in report.plan.of(SKIP)]
    if lines:  # plain text, written as it is (a name like ':smile:' is no emoji code)
        sys.stdout.write("\n".join(lines) + "\n")
    for a in report.plan.of(CONFLICT):
        console.print(
            f"[yellow]conflict[/] {escape(a.path)}: {escape(a.reason)}; both versions kept "
            "(use --prefer local|remote)",
            highlight=False,
            emoji=False,
        )
    for path, why in report.conflicts:
        console.print(
            f"[yellow]conflict[/] {escape(path)}: {escape(why)}; both versions kept",
            highlight=False,
            emoji=False,
        )
    for a in report.plan.of(REFUSED):
        console.print(
            f"[red]refused[/] {escape(repr(a.path))}: {escape(a.reason)}",
            highlight=False,
            emoji=False,
        )
    for path, why in report.skipped_local:
        console.print(f"skip {path}: {why}", highlight=False, markup=False, emoji=False)
    for path, why in report.errors:
        console.print(f"[red]error[/] {escape(path)}: {escape(why)}", highlight=False, emoji=False)
    sent = len(report.plan.of(TRANSFER)) if dry_run else report.sent_files
    sent_bytes = total if dry_run else report.sent_bytes
    counts = {
        kind: len(report.plan.of(kind)) for kind in (TRANSFER, MKDIR, DELETE, CONFLICT, REFUSED)
    }
    rest = len(report.plan.actions) - sum(counts.values())
    moved = "sent" if direction == "push" else "received"
    summary = (
        f"{folder} {arrow} {remote}: {verb}{moved} {sent} files ({sent_bytes:,} bytes), "
        f"{counts[MKDIR]} folders, {counts[DELETE]} deletions, {rest} unchanged or skipped, "
        f"{counts[CONFLICT] + len(report.conflicts)} conflicts, {counts[REFUSED]} refused, {len(report.errors)} errors"
    )
    sys.stdout.write(summary + "\n")


DeleteOpt = Annotated[
    bool,
    typer.Option(
        "--delete",
        help="Delete at the destination what was synced before and is now deleted at the source.",
    ),
]
MirrorOpt = Annotated[
    bool,
    typer.Option(
        "--mirror",
        help="Delete every destination path not at the source, synced before or not "
        "(same limits as --delete).",
    ),
]
MaxDeleteOpt = Annotated[
    int | None,
    typer.Option(
        min=0, help="Allow at most N deletions (default: refuse more than half the destination)."
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List every action, change nothing.")]
IncludeOpt = Annotated[
    list[str], typer.Option("--include", help="Only paths matching this glob; repeatable.")
]
ExcludeOpt = Annotated[
    list[str], typer.Option("--exclude", help="Skip paths matching this glob; repeatable.")
]
PreferOpt = Annotated[Prefer | None, typer.Option(help="Resolve conflicts: local or remote wins.")]


@bucket_app.command("pull")
def pull(
    ctx: typer.Context,
    prefix: Annotated[
        str, typer.Argument(help="Key prefix to pull (default: the whole bucket).")
    ] = "",
    dest: Annotated[Path, typer.Option(help="Local folder.")] = Path("."),
    bucket: Annotated[str | None, typer.Option(help="Bucket name.")] = None,
    store: StoreOpt = None,
    delete: DeleteOpt = False,
    max_delete: MaxDeleteOpt = None,
    dry_run: DryRunOpt = False,
    include: IncludeOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    prefer: PreferOpt = None,
    mirror: MirrorOpt = False,
) -> None:
    """Download new and changed objects (and folders) under PREFIX into --dest."""
    _transfer(
        settings(ctx),
        "pull",
        dest,
        prefix,
        bucket,
        store,
        delete,
        max_delete,
        dry_run,
        include,
        exclude,
        prefer,
        mirror,
    )


@bucket_app.command("push")
def push(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="Local folder (default: the working directory).")
    ] = Path("."),
    prefix: Annotated[
        str, typer.Option(help="Key prefix to push to (default: the bucket root).")
    ] = "",
    bucket: Annotated[str | None, typer.Option(help="Bucket name.")] = None,
    store: StoreOpt = None,
    delete: DeleteOpt = False,
    max_delete: MaxDeleteOpt = None,
    dry_run: DryRunOpt = False,
    include: IncludeOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    prefer: PreferOpt = None,
    mirror: MirrorOpt = False,
) -> None:
    """Upload new and changed files (and empty folders) under FOLDER to --prefix."""
    _transfer(
        settings(ctx),
        "push",
        folder,
        prefix,
        bucket,
        store,
        delete,
        max_delete,
        dry_run,
        include,
        exclude,
        prefer,
        mirror,
    )


def _open_store(s: Settings, kind: str | None = None) -> ObjectStore:
    from sagepipe.storage import open_store

    return open_store(s, kind)


def _parse_uri(uri: str) -> tuple[str, str]:
    from sagepipe.storage import parse_uri

    return parse_uri(uri)


def register(app: typer.Typer) -> None:
    """Add ``bucket`` to ``app``."""
    app.add_typer(bucket_app, name="bucket")
