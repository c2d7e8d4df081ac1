"""Write synthetic rows with the penguins schema at any row count (1e5, 1e6, 1e7, ...).

Per-species means and spreads come from the real data (data/penguins.csv), so the ML task
stays meaningful; about 1% of numeric values and 3% of `sex` values are missing, like the
original. Rows are written in chunks, so memory stays bounded at any size.

    python bench/generate_data.py ROWS OUT.csv [--parts N] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CHUNK = 500_000


def profile() -> dict[str, dict[str, object]]:
    real = pd.read_csv(ROOT / "data" / "penguins.csv")
    out: dict[str, dict[str, object]] = {}
    for species, group in real.groupby("species"):
        out[str(species)] = {
            "share": len(group) / len(real),
            "mean": group[NUMERIC].mean().to_numpy(),
            "std": group[NUMERIC].std().to_numpy(),
            "islands": group["island"].value_counts(normalize=True),
        }
    return out


def chunk(rows: int, rng: np.random.Generator, prof: dict[str, dict[str, object]]) -> pd.DataFrame:
    names = list(prof)
    shares = np.array([prof[n]["share"] for n in names], dtype=float)
    species = rng.choice(names, size=rows, p=shares / shares.sum())
    values = np.empty((rows, len(NUMERIC)))
    islands = np.empty(rows, dtype=object)
    for name in names:
        mask = species == name
        count = int(mask.sum())
        p = prof[name]
        values[mask] = rng.normal(p["mean"], p["std"], size=(count, len(NUMERIC)))  # type: ignore[call-overload]
        isl = p["islands"]
        islands[mask] = rng.choice(list(isl.index), size=count, p=isl.to_numpy())  # type: ignore[attr-defined]
    df = pd.DataFrame(values.round(1), columns=NUMERIC)
    df["flipper_length_mm"] = df["flipper_length_mm"].round()
    df["body_mass_g"] = (df["body_mass_g"] / 25).round() * 25
    df.insert(0, "island", islands)
    df.insert(0, "species", species)
    df["sex"] = rng.choice(["male", "female"], size=rows)
    df["year"] = rng.choice([2007, 2008, 2009], size=rows)
    for col in NUMERIC:
        df.loc[rng.random(rows) < 0.01, col] = np.nan
    df.loc[rng.random(rows) < 0.03, "sex"] = None
    return df


def write(rows: int, out: Path, parts: int = 1, seed: int = 0) -> list[Path]:
    """Write ``rows`` rows to ``out`` (or ``parts`` part files in a folder ``out``)."""
    rng = np.random.default_rng(seed)
    prof = profile()
    paths = [out] if parts == 1 else [out / f"part-{i:05d}.csv" for i in range(parts)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    per_part = [rows // parts + (1 if i < rows % parts else 0) for i in range(parts)]
    for path, count in zip(paths, per_part, strict=True):
        written = 0
        with path.open("w") as fh:
            while written < count:
                n = min(CHUNK, count - written)
                chunk(n, rng, prof).to_csv(fh, index=False, header=written == 0)
                written += n
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", type=float)
    parser.add_argument("out", type=Path)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in write(int(args.rows), args.out, args.parts, args.seed):
        print(path)


if __name__ == "__main__":
    main()
