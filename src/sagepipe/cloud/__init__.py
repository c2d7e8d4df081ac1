"""Run the same definition on Amazon SageMaker Pipelines: deploy, start, watch, logs."""
