"""The public Pipeline: the pure model plus compile, start (local engine) and upsert (SageMaker)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sagepipe.config import Settings
from sagepipe.core.json_types import JSON
from sagepipe.core.pipeline import PipelineModel
from sagepipe.definition import CompiledPipeline, Definition, compile_pipeline

if TYPE_CHECKING:
    from sagepipe.engine.execution import LocalExecution


class Pipeline(PipelineModel):
    """A SageMaker pipeline, as in the SageMaker SDK: ``definition()``, ``start()``, ``upsert()``."""

    def compile(
        self, settings: Settings | None = None, base_dir: Path | None = None
    ) -> CompiledPipeline:
        """The definition and the upload plan of the code it references."""
        settings = settings or Settings.from_env()
        return compile_pipeline(
            self,
            bucket=settings.bucket,
            role=settings.role_arn,
            base_dir=base_dir,
            region=settings.region,
        )

    def to_definition(self, settings: Settings | None = None) -> Definition:
        """The typed definition."""
        return self.compile(settings).definition

    def definition(self, settings: Settings | None = None) -> str:
        """The definition JSON text, exactly what is run locally and deployed."""
        return self.to_definition(settings).dumps()

    def start(
        self,
        parameters: Mapping[str, JSON] | None = None,
        *,
        settings: Settings | None = None,
        wait: bool = False,
    ) -> LocalExecution:
        """Start a local execution; returns an execution with wait/describe/list_steps."""
        from sagepipe.engine.factory import start_local

        settings = settings or Settings.from_env()
        execution = start_local(self.compile(settings), settings, parameters or {})
        if wait:
            execution.wait()
        return execution

    def upsert(self, role_arn: str, *, settings: Settings | None = None) -> str:
        """Upload the code and create or update the pipeline on SageMaker; returns its ARN."""
        from sagepipe.cloud.deploy import deploy_from_settings

        # The role is written into every job step: compile with it, never with the placeholder.
        settings = replace(settings or Settings.from_env(), role_arn=role_arn)
        compiled = self.compile(settings)
        result = deploy_from_settings(
            compiled.definition, compiled.uploads, compiled.name, settings, role_arn
        )
        return result.pipeline_arn
