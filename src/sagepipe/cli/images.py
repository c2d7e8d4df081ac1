"""``sagepipe images``: the image catalogue, its environments, and the interpreters found."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sagepipe.cli.consoles import console, err, new_table
from sagepipe.cli.state import settings
from sagepipe.config import Settings

if TYPE_CHECKING:  # the images layer loads when an images command runs, not for `--help`
    from rich.status import Status

    from sagepipe.images import Environment, ImageSpec, Interpreter

images_app = typer.Typer(
    help="SageMaker images and the local environments standing for them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
KEY_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "xgboost", "torch", "tensorflow-cpu")


def _cache_dir(s: Settings) -> Path:
    return s.cache_dir


def _specs(s: Settings, images: list[str] | None, include_large: bool) -> list[ImageSpec]:
    """The specs named (ImageUris or ``repository:version``), else every known one."""
    from sagepipe.images import load_catalogue, resolve

    if images:
        return [resolve(i, s.images, project_root=s.project_root) for i in images]
    specs = [
        resolve(entry.name, {}, project_root=s.project_root)
        for entry in load_catalogue()
        if include_large or not entry.large
    ]
    for pattern, value in s.images.items():
        if isinstance(value, dict) and "python" in value:
            specs.append(resolve(pattern, {pattern: value}, project_root=s.project_root))
    return specs


def _size(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size else ""


def _packages(spec: ImageSpec, env: Environment | None) -> str:
    if env is not None and env.packages:
        return ", ".join(f"{n} {env.packages[n]}" for n in KEY_PACKAGES if n in env.packages)
    pins = [p for p in spec.packages if p.split("=", 1)[0].split("<", 1)[0] in KEY_PACKAGES]
    return ", ".join(pins).replace("==", " ")


def here(spec: ImageSpec, env: Environment | None, interpreters: list[Interpreter]) -> str:
    """Exact or approximated here, and why; predicted from the interpreters when not built."""
    from sagepipe.images import choose_interpreter

    if spec.kind != "env":
        return f"{spec.kind} (unfaithful: not the image's Python or packages)"
    if env is not None:
        return "exact" if env.approximated is None else f"approximated: {env.approximated}"
    chosen, exact = choose_interpreter(str(spec.python), interpreters)
    if exact and chosen is not None:
        return f"exact (not built; Python {chosen.full} found)"
    if chosen is None:
        return "no Python interpreter found"
    return f"approximated (not built): no Python {spec.python} here, nearest {chosen.full}"


@images_app.command("list")
def list_images(
    ctx: typer.Context,
    include_large: Annotated[
        bool,
        typer.Option("--large/--no-large", help="Show the large (PyTorch, TensorFlow) images."),
    ] = True,
) -> None:
    """Each image: its Python, key packages, exact or approximated here, size and path."""
    from sagepipe.images import choose_cached, find_interpreters, uv_bin

    s = settings(ctx)
    cache = _cache_dir(s)
    interpreters = find_interpreters(uv_bin=uv_bin())
    table = new_table("image", "Python", "key packages", "here", "size", "path", box=None)
    for spec in _specs(s, None, include_large):
        env = choose_cached(spec, cache)
        name = spec.name + (" (large)" if spec.large else "") + (" (yours)" if spec.user else "")
        table.add_row(
            name,
            spec.python or "",
            _packages(spec, env),
            here(spec, env, interpreters),
            _size(env.size) if env else "",
            str(env.prefix) if env and env.kind == "env" else "",
        )
    console.print(table)
    console.print(f"environments live in {cache / 'envs'}", highlight=False)


@images_app.command("build")
def build(
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Argument(help="ImageUris or repository:version (default: every non-large image)."),
    ] = None,
    offline: Annotated[bool, typer.Option(help="Install only from uv's package cache.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Fail where the image's Python is not installed.")
    ] = False,
    allow_download: Annotated[
        bool, typer.Option("--allow-download", help="Let uv fetch a missing Python.")
    ] = False,
    rebuild: Annotated[bool, typer.Option(help="Build again even when cached.")] = False,
) -> None:
    """Build the environments of IMAGES (once; later runs reuse them)."""
    from sagepipe.images import ensure_environment

    s = settings(ctx)
    cache = _cache_dir(s)
    specs = [spec for spec in _specs(s, images, include_large=False) if spec.kind == "env"]
    for spec in specs:
        started = time.perf_counter()
        with err.status(f"{spec.name}: starting", spinner="dots") as status:

            def progress(line: str, status: Status = status, spec: ImageSpec = spec) -> None:
                status.update(f"{spec.name}: {line.strip()[:120]}")

            env = ensure_environment(
                spec,
                cache,
                offline=offline,
                strict=strict,
                allow_download=allow_download,
                rebuild=rebuild,
                progress=progress,
            )
        seconds = time.perf_counter() - started
        console.print(
            f"[green]ready[/] {spec.name}: Python {env.python_version}, {_size(env.size)}, "
            f"{seconds:.1f} s -> {env.prefix}",
            highlight=False,
        )
        if env.approximated:
            err.print(f"[yellow]approximated[/]: {env.approximated}", highlight=False)


@images_app.command("doctor")
def doctor(ctx: typer.Context) -> None:
    """The uv in use, the caches, and the Python interpreters found for the catalogue."""
    from sagepipe.images import choose_interpreter, find_interpreters, load_catalogue, uv_bin

    s = settings(ctx)
    uv = uv_bin()
    version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
    uv_cache = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True).stdout.strip()
    console.print(f"uv: {version} ({uv})", highlight=False)
    console.print(f"uv package cache: {uv_cache}", highlight=False)
    console.print(f"environments: {_cache_dir(s) / 'envs'}", highlight=False)
    interpreters = find_interpreters(uv_bin=uv)
    table = new_table("Python", "path", "found by", box=None)
    for interpreter in interpreters:
        table.add_row(interpreter.full, str(interpreter.path), interpreter.origin)
    console.print(table)
    for minor in sorted({e.python for e in load_catalogue()}, key=lambda v: int(v.split(".")[1])):
        chosen, exact = choose_interpreter(minor, interpreters)
        users = ", ".join(e.name for e in load_catalogue() if e.python == minor)
        if exact and chosen is not None:
            line = f"[green]exact[/] Python {minor}: {chosen.path}"
        elif chosen is not None:
            line = f"[yellow]approximated[/] Python {minor}: none here, nearest {chosen.full}"
        else:
            line = f"[red]missing[/] Python {minor}: no interpreter at all"
        console.print(f"{line} ({users})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``images`` to ``app``."""
    app.add_typer(images_app, name="images")
