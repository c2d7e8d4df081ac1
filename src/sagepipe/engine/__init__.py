"""The local engine: runs any SageMaker pipeline definition on this machine, each step sandboxed."""
