"""Train a small scikit-learn classifier and write a model directory for `ocimodel push`.

    python examples/pipeline/train.py OUT_DIR [--seed N]

OUT_DIR gets model.pkl (the fitted pipeline, pickled: scikit-learn's own format, which
`ocimodel scan` disassembles and judges without loading), README.md, and metrics.json: the
held-out accuracy and macro F1 that the pipeline pushes with the model and records as its
evaluation. The data is the iris set shipped inside scikit-learn (no download), split with
a fixed seed, so the same seed gives the same model file and the same metrics.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the model directory to write")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    features, labels = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=args.seed, stratify=labels
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
        "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
        "dataset": "iris",
        "split": "test",
        "test_size": len(y_test),
        "seed": args.seed,
    }

    args.out.mkdir(parents=True, exist_ok=True)
    # Protocol 4 and no timestamps: the same seed and library versions give the same bytes,
    # so a re-run pushes the same digest.
    (args.out / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (args.out / "README.md").write_text(
        "# iris-classifier\n\n"
        "Standard scaling and logistic regression on the iris data set (scikit-learn).\n"
        f"Held-out accuracy {metrics['accuracy']}, macro F1 {metrics['f1_macro']} "
        f"({metrics['test_size']} samples, seed {args.seed}).\n\n"
        "Load with `pickle.load` only after `ocimodel verify` (or `pull --verify`) allowed it.\n"
    )
    print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    main()
