#!/bin/bash
# Entry point of a function step's training job (ContainerEntrypoint): prepare the job with
# function_bootstrap.py (Python version check, pre-execution script, requirements), then run
# the SageMaker SDK's invoke_function on the payload. Both receive the ContainerArguments.
set -eu

here=/opt/ml/input/data/sagemaker_remote_function_bootstrap
printf "INFO: preparing the function step's environment\n"
python "$here/function_bootstrap.py" "$@"
printf "INFO: python -m sagemaker.remote_function.invoke_function\n"
exec python -m sagemaker.remote_function.invoke_function "$@"
