"""The claims report: report.json from a grid's kept runs, and report.md and docs/study.md's
claims section rendered from report.json only, so the docs can hold no figure the report lacks.

Per setting: test top-1 and macro-F1 over seeds, the validation top-1 of the kept model (what a
choice of recipe may look at), and two speeds per run from its validation top-1 curve: the
epochs it took to reach THRESHOLD (a run that never does counts as its epochs + 1, a lower
bound: it makes a slow setting look faster) and the area under the curve (its mean over
epochs). Per comparison (each setting against the baseline, and the grid's pairs), over the
seeds both settings have: the difference in test top-1 over seeds and test crops, the
differences in both speeds over seeds, each with its 95% interval, the smallest difference the
comparison could detect with its seeds, and a verdict only where the interval leaves out zero
(inception_pipeline/statistics.py). With one seed there is no verdict.
"""

from __future__ import annotations

import math
import re

import numpy as np

from inception_pipeline import statistics
from inception_pipeline.claims_grid import home, planned_seeds, runs_dir
from inception_pipeline.compare import paired

THRESHOLD = 0.5  # validation top-1 a run must reach to count as learning; speed is time to it
# Per-run speed measures: their names, and the verdict's words for a higher and a lower value.
SPEEDS = {"epochs_to_threshold": (f"epochs to val top-1 {THRESHOLD}", "slower", "faster"),
          "val_area": ("val top-1 area (mean over epochs)", "faster", "slower")}


def finite(value):
    """NaN as None, in lists and dicts too: report.json is plain JSON."""
    if isinstance(value, dict):
        return {key: finite(v) for key, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def speeds(val: list[float]) -> dict:
    reached = next((epoch for epoch, top1 in enumerate(val, 1) if top1 >= THRESHOLD), None)
    return {"epochs_to_threshold": reached or len(val) + 1, "reached": reached is not None,
            "val_area": float(np.mean(val))}


def mean_sd(values: list[float]) -> list:
    return [float(np.mean(values)), finite(float(np.std(values, ddof=1)) if len(values) > 1
                                           else math.nan)]


def compare_settings(runs: dict, reference: str, other: str) -> dict:
    seeds = sorted(runs[reference].keys() & runs[other].keys())
    row = {"other": other, "reference": reference, "seeds": seeds}
    if not seeds:
        return row
    first = runs[reference][seeds[0]]["correct"]
    a, b = (np.array([paired(first, runs[s][seed]["correct"], (f"{reference} seed {seeds[0]}",
                                                               f"{s} seed {seed}"))[1]
                      for seed in seeds]) for s in (reference, other))
    top1 = statistics.over_seeds_and_crops(a, b)
    if len(seeds) == 1:
        top1 = {**top1, "detectable": math.nan, "verdict": "one seed: no verdict"}
    row["top1"] = {**top1, "per_seed": (b.mean(axis=1) - a.mean(axis=1)).tolist()}
    for key in SPEEDS:
        values = [[speeds(runs[s][seed]["val"])[key] for seed in seeds] for s in (reference,
                                                                                   other)]
        result = statistics.over_seeds(*values)
        words = dict(zip(("better", "worse"), SPEEDS[key][1:]))
        row[key] = {**result, "verdict": words.get(result["verdict"], result["verdict"]),
                    "reference": values[0], "other": values[1]}
    return finite(row)


def build(grid: dict, runs: dict) -> dict:
    """report.json: everything report.md and the study's section show."""
    settings = []
    for setting, planned in planned_seeds(grid).items():
        seed_runs = runs.get(setting, {})
        # val_last: validation top-1 of the model kept (the last epoch's: the grids train a
        # fixed number of epochs), what a choice of recipe may look at; test top-1 may not.
        per_seed = {str(seed): {**{k: r["scores"][k] for k in ("top1_accuracy", "macro_f1")},
                                "val_last": r["val"][-1], **speeds(r["val"])}
                    for seed, r in sorted(seed_runs.items())}
        settings.append({"name": setting, "params": grid["settings"][setting],
                         "planned": planned, "runs": per_seed, **({
                             key: mean_sd([r[key] for r in per_seed.values()])
                             for key in ("top1_accuracy", "macro_f1", "val_last")}
                             if per_seed else {})})
    sd, df = statistics.pooled_sd([[r["top1_accuracy"] for r in s["runs"].values()]
                                   for s in settings])
    comparisons = [(grid["baseline"], s) for s in planned_seeds(grid) if s != grid["baseline"]]
    comparisons += [tuple(p) for p in grid.get("pairs", []) if tuple(p) not in comparisons]
    power = grid.get("power", {})
    return {"grid": str(grid["file"]), "runs": str(runs_dir(grid)),
            "budget": grid.get("budget", {}), "threshold": THRESHOLD,
            "test_crops": len(next(iter(next(iter(runs.values())).values()))["correct"]),
            "settings": settings,
            "spread": {"sd": finite(sd), "df": df,
                       "planned": {**power, "seeds": statistics.seeds_needed(
                           power["difference"], power["spread"], power.get("crop_se", 0.0))}
                       if power else None},
            "comparisons": [compare_settings(runs, ref, other) if ref in runs and other in runs
                            else {"other": other, "reference": ref, "seeds": []}
                            for ref, other in comparisons]}


def fmt(value, sign: str = "", digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:{sign}.{digits}f}"


def params_text(params: dict) -> str:
    """Params as `-S` takes them (false, not Python's False)."""
    return ", ".join(f"`{key}={str(value).lower() if isinstance(value, bool) else value}`"
                     for key, value in params.items()) or "-"


def difference_cells(result: dict, digits: int = 3) -> str:
    low, high = result["interval"]
    return (f"{result['difference']:+.{digits}f} | [{fmt(low, '+', digits)}, "
            f"{fmt(high, '+', digits)}] | {fmt(result['detectable'], '', digits)} | "
            f"{result['verdict']}")


def tables(report: dict, level: str = "##") -> list[str]:
    """The report's tables and the sentences between them, headed at ``level``."""
    threshold = report["threshold"]
    lines = [f"{level} Test top-1 over seeds", "",
             "| setting | params | seeds (planned) | top-1 mean | sd | macro-F1 mean | sd | "
             f"top-1 per seed | epochs to val top-1 {threshold}, per seed | "
             "val top-1 at the end, mean |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["settings"]:
        runs = s["runs"].values()
        if not runs:
            lines.append(f"| {s['name']} | {params_text(s['params'])} | 0 ({s['planned']}) "
                         "| | | | | not run yet | | |")
            continue
        lines.append(
            f"| {s['name']} | {params_text(s['params'])} | {len(runs)} ({s['planned']}) | "
            f"{fmt(s['top1_accuracy'][0])} | {fmt(s['top1_accuracy'][1])} | "
            f"{fmt(s['macro_f1'][0])} | {fmt(s['macro_f1'][1])} | "
            + ", ".join(f"{r['top1_accuracy']:.3f}" for r in runs) + " | "
            + ", ".join(str(r["epochs_to_threshold"]) if r["reached"] else
                        f"never ({r['epochs_to_threshold']})" for r in runs)
            + f" | {fmt(s['val_last'][0])} |")
    short = [s for s in report["settings"] if len(s["runs"]) < s["planned"]]
    if short:
        lines += ["", "Fewer seeds than planned: " + ", ".join(
            f"{s['name']} ({len(s['runs'])} of {s['planned']})" for s in short) + "."]
    stuck = {s["name"]: [seed for seed, r in s["runs"].items() if not r["reached"]]
             for s in report["settings"]}
    if any(stuck.values()):
        lines += ["", f"Never reached validation top-1 {threshold} on this budget: " + ", ".join(
            f"{name} (seed {', '.join(seeds)})" for name, seeds in stuck.items() if seeds) + "."]
    spread, plan = report["spread"], report["spread"]["planned"]
    lines += ["", f"Test top-1 varies over seeds with sd {fmt(spread['sd'])} (pooled over "
              f"the settings with two seeds or more, {spread['df']} degrees of freedom)."]
    if plan:
        lines[-1] += (f" The grid plans for a difference of {plan['difference']} at sd "
                      f"{plan['spread']} (test crops adding {plan.get('crop_se', 0.0)}): "
                      + (f"{plan['seeds']} seeds per setting." if plan["seeds"] else
                         "no number of seeds detects it."))
    lines += ["", f"{level} Differences in test top-1", "",
              "Other minus reference over the seeds both have, per crop and seed; the 95% "
              "interval covers new seeds and new test crops; \"detectable\": the smallest "
              "true difference this many seeds find 80% of the time.", "",
              "| other | reference | seeds | per seed | sd over seeds | crops' se | difference "
              "| 95% interval | detectable | verdict |", "|---" * 10 + "|"]
    for c in report["comparisons"]:
        if not c["seeds"]:
            lines.append(f"| {c['other']} | {c['reference']} | 0 | | | | | | | not run yet |")
            continue
        t = c["top1"]
        lines.append(f"| {c['other']} | {c['reference']} | {len(c['seeds'])} | "
                     + ", ".join(f"{v:+.3f}" for v in t["per_seed"])
                     + f" | {fmt(t['seed_sd'])} | {fmt(t['crop_se'])} | {difference_cells(t)} |")
    lines += ["", f"{level} Speed", "",
              f"Per run: the first epoch with validation top-1 >= {threshold} (never: the "
              "run's epochs + 1, a lower bound) and the area under the validation top-1 curve "
              "(its mean over epochs); other minus reference, paired by seed, Student's t.",
              "", "| other | reference | measure | other, per seed | reference, per seed | "
              "difference | 95% interval | detectable | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in (c for c in report["comparisons"] if c["seeds"]):
        for key, (name, _, _) in SPEEDS.items():
            m, digits = c[key], 3 if key == "val_area" else 2
            lines.append(f"| {c['other']} | {c['reference']} | {name} | "
                         + " | ".join(", ".join(f"{v:.{digits}f}".rstrip("0").rstrip(".")
                                                for v in m[s]) for s in ("other", "reference"))
                         + f" | {difference_cells(m, digits)} |")
    return lines


def markdown(report: dict) -> str:
    budget = params_text(report["budget"])
    return "\n".join([
        "# Claims report", "",
        f"Built by `inception-claims report --grid {report['grid']}` from {report['runs']}/. "
        f"Every run: params.yaml plus {budget}, plus its setting, with `train.seed` 0, 1, ...; "
        f"same data and split, so all runs are scored on the same {report['test_crops']} test "
        "crops. The procedure and its assumptions: inception_pipeline/statistics.py.", "",
        *tables(report), "", "## Validation top-1 per epoch", "",
        "![validation top-1 per epoch, mean and band over seeds](curves.png)", ""])


def markers(grid_file: str) -> tuple[str, str]:
    return f"<!-- claims:begin {grid_file} -->", f"<!-- claims:end {grid_file} -->"


def study_section(report: dict) -> str:
    """The text docs/study.md holds between the grid's markers."""
    return "\n".join(["", f"From [{report['grid']}'s report]"
                      f"(../{home({'file': report['grid']})}/report.md), {report['test_crops']} "
                      "test crops:", "", *tables(report, "####"), ""])


def with_study_section(text: str, report: dict) -> str | None:
    """``text`` (docs/study.md) with the grid's section rewritten; None without its markers."""
    begin, end = markers(report["grid"])
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda _: begin + "\n" + study_section(report) + "\n" + end, text)
