"""Wire the engine's collaborators from Settings and start a local execution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagepipe.config import Settings
from sagepipe.definition import CompiledPipeline, Definition
from sagepipe.engine.engine import Engine, LineListener, StatusListener
from sagepipe.engine.execution import LocalExecution
from sagepipe.engine.history import History
from sagepipe.engine.publishing import roll_back_leftovers
from sagepipe.engine.sandbox import BwrapProbe, Sandbox, choose_sandbox
from sagepipe.storage import ObjectStore, open_store, put_missing


def upload_code(compiled: CompiledPipeline, store: ObjectStore) -> int:
    """Put the upload plan's objects in the store, skipping those already there; returns count."""
    return len(put_missing(store, compiled.uploads)[0])


def build_engine(
    settings: Settings,
    sandbox: Sandbox | None = None,
    on_line: LineListener | None = None,
    on_status: StatusListener | None = None,
    probe: BwrapProbe | None = None,
) -> Engine:
    """An Engine over the settings' store, history and sandbox (without ``sandbox``, the one
    ``choose_sandbox`` picks, with ``probe`` when one was started).

    Outputs a killed engine had begun to publish to a remote store are removed here first.
    """
    store = open_store(settings)
    history = History(settings.history_path)
    roll_back_leftovers(history, lambda: store)
    return Engine(
        settings,
        store,
        history,
        sandbox or choose_sandbox(settings.sandbox, probe),
        on_line=on_line,
        on_status=on_status,
    )


def start_definition(
    engine: Engine,
    definition: Definition,
    pipeline_name: str,
    parameters: Mapping[str, Any],
    max_parallel: int | None = None,
) -> LocalExecution:
    """Record and start an execution of ``definition``."""
    run = engine.prepare(definition, pipeline_name, parameters, max_parallel)
    return LocalExecution(engine, run).start()


def start_local(
    compiled: CompiledPipeline, settings: Settings, parameters: Mapping[str, Any]
) -> LocalExecution:
    """Upload the code to the store and start the pipeline locally."""
    engine = build_engine(settings)
    upload_code(compiled, engine.store)
    return start_definition(engine, compiled.definition, compiled.name, parameters)
