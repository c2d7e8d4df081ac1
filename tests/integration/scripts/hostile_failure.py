"""A training script that points /opt/ml/output/failure at a host file, then fails."""

import os

os.makedirs("/opt/ml/output", exist_ok=True)
os.symlink(os.environ["TARGET"], "/opt/ml/output/failure")
raise RuntimeError("the training failed on purpose")
