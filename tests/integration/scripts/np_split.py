"""A line of AWS-style preprocessing: np.split of a DataFrame gives DataFrames on pandas 1.1.3
(the scikit-learn 1.2-1 image) and plain arrays on pandas 3 (no to_csv)."""

import sys

import numpy as np
import pandas as pd

OUT = "/opt/ml/processing/output/parts"
df = pd.DataFrame({"a": range(10), "b": range(10)})
train, validation, test = np.split(df, [6, 8])
validation.to_csv(OUT + "/validation.csv", index=False)
print("seen", sys.version_info[:2], pd.__version__, type(train).__name__)
