#!/usr/bin/env python3
"""Golden RewardBench scores computed by the official allenai/reward-bench code.

Reads the official sources from a git checkout (or bare clone) of
allenai/reward-bench at a revision, and runs them as they are, without
copying them anywhere:

  - rewardbench/constants.py (EXAMPLE_COUNTS, SUBSET_MAPPING), executed;
  - rewardbench/utils.py calculate_scores_per_section, taken out of the
    file with ast (the module imports datasets, transformers and more);
  - analysis/get_benchmark_results.py get_average_over_rewardbench, the
    same way (it needs numpy and pandas: Debian's python3-numpy and
    python3-pandas).

It draws random per-example outcomes (scores from a few integers, so that
ties are common), counts each pair right as scripts/run_rm.py does
(1 if chosen > rejected else 0), takes each subset's accuracy as run_rm.py
does, and records the official section scores, the "Prior Sets (0.5
weight)" column and the leaderboard average. Cases with every core subset
go through get_average_over_rewardbench; cases with whole sections missing
(which the leaderboard never shows) record calculate_scores_per_section's
sections, whose missing ones are 0.

  scripts/rewardbench-golden.py REPO [REV] > internal/rewardbench/testdata/official.json
"""
import ast
import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd


def source(repo, rev, path):
    return subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout


def function(src, name, namespace):
    """Executes the top-level function `name` of src in namespace."""
    for node in ast.parse(src).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            code = compile(ast.Module(body=[node], type_ignores=[]), name, "exec")
            exec(code, namespace)
            return namespace[name]
    raise SystemExit(f"{name} not found")


def main():
    repo = sys.argv[1]
    rev = sys.argv[2] if len(sys.argv) > 2 else "HEAD"
    full = subprocess.run(["git", "-C", repo, "rev-parse", rev], check=True, capture_output=True, text=True).stdout.strip()
    ns = {"np": np, "pd": pd}
    exec(source(repo, full, "rewardbench/constants.py"), ns)
    sections = function(source(repo, full, "rewardbench/utils.py"), "calculate_scores_per_section", ns)
    leaderboard = function(source(repo, full, "analysis/get_benchmark_results.py"), "get_average_over_rewardbench", ns)
    counts, mapping = ns["EXAMPLE_COUNTS"], ns["SUBSET_MAPPING"]
    core = [s for subs in mapping.values() for s in subs]
    prior = ["anthropic_helpful", "anthropic_hhh", "shp", "summarize"]

    rng = random.Random(20261201)
    cases = []
    for i in range(24):
        complete = i < 16
        if complete:
            subsets = list(core)
        else:
            keep = rng.sample(list(mapping), rng.randint(1, 3))
            subsets = [s for sec in keep for s in mapping[sec] if rng.random() < 0.7] or [mapping[keep[0]][0]]
        with_prior = rng.sample(prior, rng.randint(1, 4)) if i % 2 else []
        examples, acc = [], {}
        for sub in subsets + with_prior:
            results = []
            for _ in range(rng.randint(1, 6)):
                c, r = rng.randint(-2, 2), rng.randint(-2, 2)
                examples.append([sub, c, r])
                results.append(1 if c > r else 0)
            acc[sub] = sum(results) / len(results)
        case = {"name": f"case-{i}", "examples": examples}
        case["sections"] = sections(counts, mapping, {k: v for k, v in acc.items() if k in core})
        if complete:
            df = pd.DataFrame([{"model": "m", "model_type": "t", **{k: v for k, v in acc.items() if k in core}}])
            prefs = pd.DataFrame([{"model": "m", **{p: acc.get(p, np.nan) for p in prior}}] if with_prior else [{"model": "other", **{p: 0.5 for p in prior}}])
            row = leaderboard(df, prefs).iloc[0]
            case["leaderboard_sections"] = {s: float(row[s]) for s in mapping}
            p = row["Prior Sets (0.5 weight)"]
            case["prior_sets"] = None if pd.isna(p) else float(p)
            case["overall"] = float(row["average"])
        cases.append(case)
    json.dump({"upstream": f"allenai/reward-bench@{full}", "made_by": "scripts/rewardbench-golden.py", "cases": cases}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
