#!/usr/bin/env python3
"""Generate a small, deterministic, entirely SYNTHETIC longevity research dataset.

Usage: make_demo_data.py OUT_DIR

Every value is drawn from a seeded random number generator: there are no real
people in here, and running the script twice gives the same data (and, as far
as the file formats allow, the same bytes). Needs numpy, pandas, pyarrow, h5py.

Layout written under OUT_DIR (which must not exist yet or be empty):

    cohort/participants.csv             ~2,000 synthetic participants
    biomarkers/panel_2025.parquet       ~6,000 biomarker visits (3 per participant)
    imaging/grip_strength.npy           float32 array, participants x 12 sessions
    omics/methylation.h5                'beta' float32 (participants x CpG sites) + 'meta/sites' table
    docs/README.txt                     says all of the above is synthetic
    docs/EMPTY                          an empty file
    notes/deep/nested/folder/readme.md  a small note, deep down
    latest_panel.parquet                symlink -> biomarkers/panel_2025.parquet
"""

import datetime as dt
import os
import sys

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20250401
N_PARTICIPANTS = 2000
N_VISITS = 3
N_GRIP_SESSIONS = 12
N_CPG = 500
SITES = ["SYN-NORTH", "SYN-SOUTH", "SYN-EAST", "SYN-WEST"]


def participants(rng):
    n = N_PARTICIPANTS
    ids = [f"SYN-P{i:05d}" for i in range(1, n + 1)]
    sex = rng.choice(["F", "M"], size=n)
    birth_year = rng.integers(1935, 1990, size=n)
    start = dt.date(2019, 1, 1)
    enrol = [start + dt.timedelta(days=int(d)) for d in rng.integers(0, 5 * 365, size=n)]
    smoker = rng.choice(["never", "former", "current"], size=n, p=[0.55, 0.30, 0.15])
    bmi = np.round(rng.normal(26.5, 4.2, size=n).clip(16.0, 48.0), 1)
    site = rng.choice(SITES, size=n)
    return pd.DataFrame(
        {
            "participant_id": ids,
            "sex": sex,
            "birth_year": birth_year,
            "enrollment_date": [d.isoformat() for d in enrol],
            "smoker": smoker,
            "bmi": bmi,
            "site": site,
        }
    )


def biomarkers(rng, cohort):
    rows = cohort.loc[cohort.index.repeat(N_VISITS)].reset_index(drop=True)
    n = len(rows)
    visit = np.tile(np.arange(1, N_VISITS + 1), len(cohort))
    age = (2025 - rows["birth_year"].to_numpy()) + (visit - 1) * 0.5
    smoker = (rows["smoker"] == "current").to_numpy()
    male = (rows["sex"] == "M").to_numpy()
    bmi = rows["bmi"].to_numpy()
    crp = np.exp(rng.normal(0.3 + 0.04 * (bmi - 26) + 0.4 * smoker, 0.7, size=n))
    hba1c = rng.normal(5.3 + 0.012 * (age - 50) + 0.03 * (bmi - 26), 0.45, size=n)
    ldl = rng.normal(118 + 0.3 * (age - 50) - 6 * male, 28, size=n).clip(40, 260)
    igf1 = rng.normal(190 - 1.6 * (age - 50), 40, size=n).clip(30, 450)
    epi_age = age + 1.5 * smoker + 0.9 * male + 0.15 * (bmi - 26) + rng.normal(0, 3.5, size=n)
    telomere = rng.normal(7.2 - 0.025 * (age - 50) - 0.2 * smoker, 0.55, size=n).clip(3.5, 11)
    return pd.DataFrame(
        {
            "participant_id": rows["participant_id"],
            "visit": visit.astype(np.int16),
            "crp_mg_l": np.round(crp, 2),
            "hba1c_pct": np.round(hba1c, 2),
            "ldl_mg_dl": np.round(ldl, 1),
            "igf1_ng_ml": np.round(igf1, 1),
            "epigenetic_age_years": np.round(epi_age, 2),
            "telomere_kb": np.round(telomere, 3),
        }
    )


def grip_strength(rng, cohort):
    male = (cohort["sex"] == "M").to_numpy()[:, None]
    age = (2025 - cohort["birth_year"].to_numpy())[:, None]
    base = 28 + 12 * male - 0.25 * (age - 50)
    decline = -0.15 * np.arange(N_GRIP_SESSIONS)[None, :]
    noise = rng.normal(0, 2.0, size=(len(cohort), N_GRIP_SESSIONS))
    return (base + decline + noise).clip(5, 70).astype(np.float32)


def methylation(rng, path, cohort):
    n = len(cohort)
    site_mean = rng.beta(2, 2, size=N_CPG)
    age = (2025 - cohort["birth_year"].to_numpy()).astype(np.float64)
    age_effect = rng.normal(0, 0.002, size=N_CPG)
    beta = site_mean[None, :] + (age[:, None] - 60) * age_effect[None, :]
    beta = (beta + rng.normal(0, 0.03, size=(n, N_CPG))).clip(0, 1).astype(np.float32)
    chrom = rng.integers(1, 23, size=N_CPG)
    pos = rng.integers(10_000, 240_000_000, size=N_CPG)
    sites = np.zeros(N_CPG, dtype=[("cpg_id", "S12"), ("chrom", "<u1"), ("pos", "<u4"), ("age_coef", "<f4")])
    sites["cpg_id"] = [f"cgSYN{i:06d}".encode() for i in range(N_CPG)]
    sites["chrom"] = chrom
    sites["pos"] = pos
    sites["age_coef"] = age_effect
    with h5py.File(path, "w", track_order=False) as f:
        d = f.create_dataset("beta", data=beta, track_times=False)
        d.attrs["description"] = "SYNTHETIC methylation beta values (rows: participants, cols: CpG sites)"
        d.attrs["platform"] = "none (randomly generated)"
        d.attrs["seed"] = SEED
        d.attrs["rows"] = "participant_id order of cohort/participants.csv"
        g = f.create_group("meta")
        g.attrs["synthetic"] = True
        s = g.create_dataset("sites", data=sites, track_times=False)
        s.attrs["description"] = "SYNTHETIC CpG site table"
        g.create_dataset(
            "participant_id",
            data=np.array([p.encode() for p in cohort["participant_id"]], dtype="S10"),
            track_times=False,
        )


README = """\
SYNTHETIC LONGEVITY DEMO DATASET
================================

Everything in this directory was generated by scripts/make_demo_data.py from a
fixed random seed ({seed}). No value describes a real person: participant ids
(SYN-P00001 ...), sites, dates, biomarkers, grip strength and methylation
values are all random numbers shaped to look vaguely plausible.

  cohort/participants.csv            {n} participants
  biomarkers/panel_2025.parquet      {v} visits x 6 biomarkers
  imaging/grip_strength.npy          float32 [{n} x {g}]
  omics/methylation.h5               beta float32 [{n} x {c}], meta/sites, meta/participant_id
  latest_panel.parquet               symlink to biomarkers/panel_2025.parquet
  docs/EMPTY                         an empty file, on purpose

It exists to demonstrate cce4 (pack, ls, cat, verify) on realistic file types.
"""

NOTE = """\
# Deeply nested note

This file sits four directories down to show that `cce4 dataset pack` keeps
the whole tree. Synthetic demo data only.
"""


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT_DIR", file=sys.stderr)
        return 64
    out = sys.argv[1]
    if os.path.exists(out) and os.listdir(out):
        print(f"{out}: exists and is not empty", file=sys.stderr)
        return 73
    rng = np.random.default_rng(SEED)

    for sub in ["cohort", "biomarkers", "imaging", "omics", "docs", "notes/deep/nested/folder"]:
        os.makedirs(os.path.join(out, sub), exist_ok=True)

    cohort = participants(rng)
    cohort.to_csv(os.path.join(out, "cohort/participants.csv"), index=False)

    panel = biomarkers(rng, cohort)
    pq.write_table(
        pa.Table.from_pandas(panel, preserve_index=False),
        os.path.join(out, "biomarkers/panel_2025.parquet"),
        compression="zstd",
    )

    grip = grip_strength(rng, cohort)
    np.save(os.path.join(out, "imaging/grip_strength.npy"), grip)

    methylation(rng, os.path.join(out, "omics/methylation.h5"), cohort)

    with open(os.path.join(out, "docs/README.txt"), "w") as f:
        f.write(README.format(seed=SEED, n=len(cohort), v=len(panel), g=N_GRIP_SESSIONS, c=N_CPG))
    open(os.path.join(out, "docs/EMPTY"), "w").close()
    with open(os.path.join(out, "notes/deep/nested/folder/readme.md"), "w") as f:
        f.write(NOTE)
    os.symlink("biomarkers/panel_2025.parquet", os.path.join(out, "latest_panel.parquet"))

    files, total = 0, 0
    for root, _, names in os.walk(out):
        for name in names:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                files += 1
                total += os.path.getsize(p)
    print(
        f"synthetic dataset in {out}: {files} files + 1 symlink, {total / 1e6:.1f} MB "
        f"({len(cohort)} participants, {len(panel)} biomarker rows, seed {SEED})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
