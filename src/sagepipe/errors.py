"""The sagepipe exception tree: every layer raises a subclass of :class:`SagepipeError`."""

from __future__ import annotations


class SagepipeError(Exception):
    """Root of every error sagepipe raises on purpose; the CLI prints it as one line."""


class PipelineError(SagepipeError):
    """A pipeline built with the authoring API is invalid."""


class DefinitionError(PipelineError):
    """A pipeline definition JSON is malformed or inconsistent."""


class UsageError(SagepipeError):
    """A command-line mistake: an option value, an argument or a combination of them."""


class ConfigError(SagepipeError):
    """Settings, environment or pyproject configuration is invalid."""


class StorageError(SagepipeError):
    """An object store operation failed."""


class ObjectNotFoundError(StorageError):
    """The object or bucket does not exist."""


class UnsafeKeyError(StorageError):
    """A key would escape the destination root."""


class ExecutionError(SagepipeError):
    """A local execution could not be started or inspected."""


class HistoryError(ExecutionError):
    """The history database cannot be opened or read."""


class SageMakerError(SagepipeError):
    """A SageMaker API call failed."""


class SyncError(SagepipeError):
    """A bucket pull or push could not be carried out."""
