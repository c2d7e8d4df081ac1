"""publish_model: the model passed the quality gate; write it, with its test metrics, to the
model output URI."""

import argparse
import json
import os
import tarfile
import tempfile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default="/opt/ml/processing/input/model")
    parser.add_argument("--evaluation-dir", default="/opt/ml/processing/input/evaluation")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/model")
    args = parser.parse_args()

    with open(os.path.join(args.evaluation_dir, "evaluation.json")) as fh:
        evaluation = json.load(fh)
    os.makedirs(args.output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(os.path.join(args.model_dir, "model.tar.gz")) as tar:
            tar.extractall(tmp)
        with open(os.path.join(tmp, "metrics.json")) as fh:
            metrics = json.load(fh)
        metrics["test"] = evaluation["metrics"]
        with open(os.path.join(tmp, "metrics.json"), "w") as fh:
            json.dump(metrics, fh, indent=2)
        with tarfile.open(os.path.join(args.output_dir, "model.tar.gz"), "w:gz") as tar:
            for name in sorted(os.listdir(tmp)):
                tar.add(os.path.join(tmp, name), arcname=name)
    with open(os.path.join(args.output_dir, "evaluation.json"), "w") as fh:
        json.dump(evaluation, fh, indent=2)
    quality = evaluation["quality"]
    print(f"published model with test {quality['name']}={quality['value']:.4f}")


if __name__ == "__main__":
    main()
