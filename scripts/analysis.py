#!/usr/bin/env python3
"""A researcher's first look at the synthetic longevity dataset, with unmodified pandas,
pyarrow and numpy: point it at any directory holding the data (the cce4fs mount).

    analysis.py DATA_DIR
"""
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def main(root: str) -> int:
    cohort = pd.read_csv(f"{root}/cohort/participants.csv")
    # A column subset: pyarrow reads only those columns' pages from the file.
    panel = pq.read_table(f"{root}/biomarkers/panel_2025.parquet",
                          columns=["participant_id", "visit", "epigenetic_age_years", "crp_mg_l"]).to_pandas()
    grip = np.load(f"{root}/imaging/grip_strength.npy", mmap_mode="r")

    first = panel[panel["visit"] == panel["visit"].min()]
    df = cohort.merge(first, on="participant_id")
    df["age"] = 2025 - df["birth_year"]
    df["age_gap"] = df["epigenetic_age_years"] - df["age"]
    df["grip_mean"] = np.asarray(grip).mean(axis=1)[: len(df)]

    print(f"participants: {len(cohort)}, biomarker visits: {len(panel)}, grip matrix: {grip.shape[0]}x{grip.shape[1]}")
    summary = df.groupby("smoker").agg(n=("participant_id", "size"), age=("age", "mean"),
                                       epigenetic_age_gap=("age_gap", "mean"), crp_mg_l=("crp_mg_l", "median"))
    print(summary.round(3).to_string())
    r = np.corrcoef(df["age_gap"], np.log(df["crp_mg_l"]))[0, 1]
    print(f"correlation of epigenetic age gap with log CRP: {r:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
