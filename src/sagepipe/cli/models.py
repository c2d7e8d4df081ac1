"""``models list`` (the local model registry) and ``predict`` (score rows with a model)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from sagepipe.cli.consoles import console, err, escape, new_table
from sagepipe.cli.options import StoreOpt, output_file
from sagepipe.cli.state import settings
from sagepipe.config import Settings
from sagepipe.errors import ExecutionError, UsageError

models_app = typer.Typer(
    help="The local model registry.", no_args_is_help=True, rich_markup_mode=None
)
MODEL_FILE = "model.joblib"
# The example app's image (app/sagemaker_pipeline.py): its models load on this environment.
APP_IMAGE = "sagemaker-scikit-learn:1.2-1-cpu-py3"


@models_app.command("list")
def list_models(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Only this model package group.")] = None,
) -> None:
    """Model versions registered by local executions."""
    from sagepipe.engine.history import History

    table = new_table(title="models")
    for col in ("group", "version", "approval", "model data", "execution"):
        table.add_column(col)
    for m in History(settings(ctx).history_path).models(group):
        table.add_row(
            escape(m["group_name"]),
            str(m["version"]),
            escape(m["approval"]),
            escape(m["model_data_url"] or ""),
            m["execution_id"],
        )
    console.print(table)


def predict(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="s3:// URI (or local path) of a model.tar.gz.")],
    data: Annotated[Path, typer.Argument(help="CSV of raw rows.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV to write (default: stdout).")
    ] = None,
    store: StoreOpt = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="The image whose environment loads the model (default: the image it was "
            "registered with, else the example app's scikit-learn 1.2-1)."
        ),
    ] = None,
) -> None:
    """Score raw rows with a model artifact of the example app (runs app/src/predict.py).

    The model is loaded on the environment of the image that made it: a model pickled by
    scikit-learn 1.2.1 is not unpickled by another version.
    """
    from sagepipe.engine.environments import StepEnvironments
    from sagepipe.storage import open_store

    s = settings(ctx)
    scorer = s.project_root / "app" / "src" / "predict.py"
    if not scorer.is_file():
        raise UsageError(f"{scorer} not found; predict scores models of the example app")
    _check_csv(data)
    if output is not None:
        output_file(output)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(model_uri)
        if model_uri.startswith("s3://"):
            local = Path(tmp) / "model.tar.gz"
            open_store(s, store.value if store else None).get_file(model_uri, local)
        elif not local.exists():
            raise UsageError(f"{model_uri} is neither an s3:// URI nor a local file")
        _check_model(local, model_uri)
        chosen = image or _registered_image(s, model_uri) or APP_IMAGE
        env = StepEnvironments(s).environment(
            chosen, lambda line: err.print(escape(line), highlight=False)
        )
        cmd = env.argv(["python", str(scorer), "--model", str(local), "--data", str(data)])
        cmd += ["--output", str(output or "-")]
        done = subprocess.run(cmd, check=False, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ExecutionError(
            f"predict.py failed: {lines[-1].strip() if lines else done.returncode}"
        )
    sys.stderr.write(done.stderr)


def _registered_image(s: Settings, model_uri: str) -> str | None:
    """The inference image the local registry holds for ``model_uri`` (newest first)."""
    from sagepipe.engine.history import History

    if not s.history_path.is_file():
        return None
    for model in History(s.history_path).models():  # newest first
        if model["model_data_url"] == model_uri and model.get("image"):
            return str(model["image"])
    return None


def _check_csv(data: Path) -> None:
    if not data.is_file():
        raise UsageError(f"{data} is not a file")
    with data.open("rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise UsageError(f"{data} is empty; give a CSV with a header row and data rows")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the end of the sample
            raise UsageError(f"{data} is not a UTF-8 CSV (byte {exc.start})") from None
    if b"\0" in head:
        raise UsageError(f"{data} is binary, not a CSV")


def _check_model(local: Path, uri: str) -> None:
    if local.is_dir():
        if not (local / MODEL_FILE).is_file():
            raise UsageError(
                f"{uri}: the folder has no {MODEL_FILE}; not a model of the example app"
            )
        return
    try:
        with tarfile.open(local) as tar:
            names = {Path(n).name for n in tar.getnames()}
    except (tarfile.TarError, OSError):
        raise UsageError(f"{uri} is not a model.tar.gz (not a readable tar archive)") from None
    if MODEL_FILE not in names:
        raise UsageError(f"{uri}: the archive has no {MODEL_FILE}; not a model of the example app")


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``predict`` to ``app``."""
    app.add_typer(models_app, name="models")
    app.command()(predict)
