"""``sagepipe bucket``: the bucket's folder layout, pull, push, ls and put."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sagepipe.cli.consoles import console, err
from sagepipe.config import Settings
from sagepipe.errors import SagepipeError
from sagepipe.storage import open_store, parse_uri

bucket_app = typer.Typer(help="Manage the bucket: layout, pull, push.", no_args_is_help=True)


def _settings() -> Settings:
    from sagepipe.cli.main import settings

    return settings()


@bucket_app.command("put")
def put(
    source: Path,
    uri: str,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when the object exists.")
    ] = False,
    store: Annotated[str | None, typer.Option(help="local (default) or s3.")] = None,
) -> None:
    """Upload one local file to an s3:// URI."""
    s = _settings()
    target = open_store(s, store)
    if not source.is_file():
        raise SagepipeError(f"{source} is not a file")
    bucket, _ = parse_uri(uri)
    if if_missing and target.head(uri) is not None:
        err.print(f"{uri} already exists; left as is")
        return
    target.ensure_bucket(bucket)
    target.put_file(uri, source)
    err.print(f"uploaded {source} -> {uri}")


def _bucket(s: Settings, bucket: str | None) -> str:
    return bucket or s.bucket


@bucket_app.command("init")
def init(
    bucket: Annotated[
        str | None, typer.Option(help="Bucket name (default: the configured one).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="local or s3 (default: s3 when an endpoint or credentials are set, else the configured store)."
        ),
    ] = None,
) -> None:
    """Create the bucket when missing and the seed's folders (app/, other/logs/, ...)."""
    from sagepipe.sync.layout import init_bucket

    s = _settings()
    name = _bucket(s, bucket)
    result = init_bucket(open_store(s, _store_kind(s, store)), name, s.bucket_folders)
    state = "created" if result.bucket_created else "exists"
    console.print(f"bucket {name}: {state}")
    for key in result.created:
        console.print(f"  [green]+[/] {key}")
    for key in result.existing:
        console.print(f"  [dim]= {key}[/]")


@bucket_app.command("ls")
def ls(
    prefix: Annotated[str, typer.Argument(help="Key prefix.")] = "",
    bucket: Annotated[str | None, typer.Option(help="Bucket name.")] = None,
    store: Annotated[str | None, typer.Option(help="local or s3.")] = None,
) -> None:
    """List objects under a prefix."""
    s = _settings()
    name = _bucket(s, bucket)
    total = 0
    for info in open_store(s, _store_kind(s, store)).list(f"s3://{name}/{prefix}"):
        console.print(f"{info.size:>12,}  {info.key}", highlight=False, markup=False)
        total += 1
    err.print(f"{total} objects")


def _store_kind(s: Settings, store: str | None) -> str:
    if store:
        return store
    # Bucket tooling is about the real bucket: S3 as soon as an endpoint or credentials exist.
    if s.endpoint_url or s.env.get("AWS_ACCESS_KEY_ID") or s.env.get("AWS_PROFILE"):
        return "s3"
    return s.store


def _transfer(
    direction: str,
    folder: Path,
    prefix: str,
    bucket: str | None,
    store: str | None,
    delete: bool,
    max_delete: int | None,
    dry_run: bool,
    include: list[str],
    exclude: list[str],
    prefer: str | None,
) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from sagepipe.sync.plan import CONFLICT, DELETE, MKDIR, REFUSED, SKIP, TRANSFER, Options
    from sagepipe.sync.runner import sync
    from sagepipe.sync.scan import Filters

    if prefer not in (None, "local", "remote"):
        raise SagepipeError("--prefer must be local or remote")
    s = _settings()
    name = _bucket(s, bucket)
    target = open_store(s, _store_kind(s, store))
    options = Options(delete=delete, max_delete=max_delete, prefer=prefer)
    filters = Filters.build(include, exclude, folder if folder.is_dir() else None)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=dry_run or not err.is_terminal,
    ) as bar:
        task = bar.add_task(direction, total=None)
        report = sync(
            target,
            name,
            prefix,
            folder,
            direction,
            options,
            filters,
            dry_run=dry_run,
            progress=lambda n: bar.advance(task, n),
            on_plan=lambda plan: bar.update(task, total=sum(a.size for a in plan.of(TRANSFER))),
        )
    total = sum(a.size for a in report.plan.of(TRANSFER))
    verb = "would " if dry_run else ""
    arrow = "->" if direction == "push" else "<-"
    remote = f"s3://{name}/{prefix.strip('/')}"
    for a in report.plan.of(TRANSFER):
        console.print(
            f"{verb}{'upload' if direction == 'push' else 'download'} {a.path} ({a.reason})",
            highlight=False,
            markup=False,
        )
    for a in report.plan.of(MKDIR):
        console.print(f"{verb}create folder {a.path}", highlight=False, markup=False)
    for a in report.plan.of(DELETE):
        console.print(f"{verb}delete {a.path}", highlight=False, markup=False)
    for a in report.plan.of(SKIP):
        console.print(f"skip {a.path}: {a.reason}", highlight=False, markup=False)
    for a in report.plan.of(CONFLICT):
        console.print(
            f"[yellow]conflict[/] {a.path}: {a.reason}; both versions kept (use --prefer local|remote)",
            highlight=False,
        )
    for a in report.plan.of(REFUSED):
        console.print(f"[red]refused[/] {a.path!r}: {a.reason}", highlight=False)
    for path, why in report.skipped_local:
        console.print(f"skip {path}: {why}", highlight=False, markup=False)
    for path, why in report.errors:
        console.print(f"[red]error[/] {path}: {why}", highlight=False)
    sent = len(report.plan.of(TRANSFER)) if dry_run else report.sent_files
    sent_bytes = total if dry_run else report.sent_bytes
    counts = {
        kind: len(report.plan.of(kind)) for kind in (TRANSFER, MKDIR, DELETE, CONFLICT, REFUSED)
    }
    rest = len(report.plan.actions) - sum(counts.values())
    moved = "sent" if direction == "push" else "received"
    console.print(
        f"{folder} {arrow} {remote}: {verb}{moved} {sent} files ({sent_bytes:,} bytes), "
        f"{counts[MKDIR]} folders, {counts[DELETE]} deletions, {rest} unchanged or skipped, "
        f"{counts[CONFLICT]} conflicts, {counts[REFUSED]} refused, {len(report.errors)} errors",
        highlight=False,
    )
    if not report.ok:
        raise typer.Exit(1)


DeleteOpt = Annotated[
    bool, typer.Option("--delete", help="Delete destination paths that are not at the source.")
]
MaxDeleteOpt = Annotated[
    int | None,
    typer.Option(
        help="Allow at most N deletions (default: refuse more than half the destination)."
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List every action, change nothing.")]
IncludeOpt = Annotated[
    list[str], typer.Option("--include", help="Only paths matching this glob; repeatable.")
]
ExcludeOpt = Annotated[
    list[str], typer.Option("--exclude", help="Skip paths matching this glob; repeatable.")
]
PreferOpt = Annotated[str | None, typer.Option(help="Resolve conflicts: local or remote wins.")]


@bucket_app.command("pull")
def pull(
    prefix: Annotated[
        str, typer.Argument(help="Key prefix to pull (default: the whole bucket).")
    ] = "",
    dest: Annotated[Path, typer.Option(help="Local folder.")] = Path("."),
    bucket: Annotated[str | None, typer.Option(help="Bucket name.")] = None,
    store: Annotated[str | None, typer.Option(help="local or s3.")] = None,
    delete: DeleteOpt = False,
    max_delete: MaxDeleteOpt = None,
    dry_run: DryRunOpt = False,
    include: IncludeOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    prefer: PreferOpt = None,
) -> None:
    """Download new and changed objects (and folders) under PREFIX into --dest."""
    _transfer(
        "pull", dest, prefix, bucket, store, delete, max_delete, dry_run, include, exclude, prefer
    )


@bucket_app.command("push")
def push(
    folder: Annotated[
        Path, typer.Argument(help="Local folder (default: the working directory).")
    ] = Path("."),
    prefix: Annotated[
        str, typer.Option(help="Key prefix to push to (default: the bucket root).")
    ] = "",
    bucket: Annotated[str | None, typer.Option(help="Bucket name.")] = None,
    store: Annotated[str | None, typer.Option(help="local or s3.")] = None,
    delete: DeleteOpt = False,
    max_delete: MaxDeleteOpt = None,
    dry_run: DryRunOpt = False,
    include: IncludeOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    prefer: PreferOpt = None,
) -> None:
    """Upload new and changed files (and empty folders) under FOLDER to --prefix."""
    _transfer(
        "push", folder, prefix, bucket, store, delete, max_delete, dry_run, include, exclude, prefer
    )
