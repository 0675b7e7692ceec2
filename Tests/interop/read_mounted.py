#!/usr/bin/env python3
"""Reads the same data from two directory trees with unmodified Python libraries and
prints one JSON object per tree; the Swift mount tests require the two to be equal.

    read_mounted.py ROOT   (ROOT holds the files make_demo_data.py writes)

Uses pandas.read_csv, pyarrow.parquet.read_table with a column subset, numpy.load with
mmap_mode="r", and h5py — the readers a researcher's notebook would use.
"""
import hashlib
import json
import os
import sys

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def main(root: str) -> int:
    out = {}
    df = pd.read_csv(os.path.join(root, "cohort/participants.csv"))
    out["csv"] = {"rows": len(df), "columns": list(df.columns),
                  "mean_bmi": round(float(df["bmi"].mean()), 9), "sites": sorted(df["site"].unique().tolist())}
    table = pq.read_table(os.path.join(root, "biomarkers/panel_2025.parquet"),
                          columns=["participant_id", "epigenetic_age_years", "telomere_kb"])
    panel = table.to_pandas()
    out["parquet"] = {"rows": table.num_rows, "columns": table.column_names,
                      "mean_epi_age": round(float(panel["epigenetic_age_years"].mean()), 9),
                      "sha256": hashlib.sha256(panel.to_csv(index=False).encode()).hexdigest()}
    arr = np.load(os.path.join(root, "imaging/grip_strength.npy"), mmap_mode="r")
    out["npy"] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "sum": round(float(np.asarray(arr, dtype=np.float64).sum()), 6),
                  "row_17": [round(float(x), 6) for x in arr[17]], "mmap": isinstance(arr, np.memmap)}
    with h5py.File(os.path.join(root, "omics/methylation.h5"), "r") as f:
        beta = f["beta"]
        out["h5"] = {"shape": list(beta.shape), "slice_sum": round(float(beta[100:200, 10:60].sum()), 6),
                     "attrs": sorted(beta.attrs.keys())}
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
