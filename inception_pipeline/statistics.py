"""The one procedure inception-compare and inception-claims use for a difference between two
settings, its power, and the seeds a difference needs.

Test top-1 over seeds and test crops. Runs of settings A and B are paired by seed and scored on
the same test crops: c[s, i] = (B right on crop i, seed s) - (A right on crop i, seed s). The
difference is the mean of c. Its variance comes from a two-way crossed random-effects model,
c[s, i] = mu + seed[s] + crop[i] + residual[s, i] (the multi-reader multi-case analysis of
diagnostic imaging, seeds as readers and crops as cases): with the ANOVA mean squares of seeds
(MS_s), crops (MS_c) and the residual (MS_e) over n seeds and N crops,

    var(mean) = sigma_seed^2 / n + sigma_crop^2 / N + sigma_residual^2 / (n N),

each component estimated from the mean squares and set to 0 when negative, so the interval
covers a new draw of training seeds and of test crops from the same benchmark. The interval is
mean +- t * se with n - 1 degrees of freedom, those of the seeds' term (Satterthwaite's, which
credit the crops' many, gave verdicts in 8% of simulated grids without a difference at 2
seeds). With one seed only the crops' term is known (compare's case: two runs). Assumptions:
seeds are independent draws of the training's randomness, test crops independent draws of the
benchmark's images (crops of one photo are counted as independent), effects additive, the mean
close to normal. tests/test_statistics.py measures it on simulated grids.

Any other per-run measure (epochs to a threshold, area under a curve): Student's t interval of
the mean paired per-seed difference, n - 1 degrees of freedom. When every seed gives the same
difference there is no spread to scale by; a sign test decides then (6 seeds for 5%).

A difference is a verdict only when its interval leaves out zero. Power: the smallest true
difference found with probability POWER is (t(1 - (1 - LEVEL) / 2) + t(POWER)) * se, with the
interval's degrees of freedom.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95  # two-sided confidence of every interval
POWER = 0.8  # the chance of a verdict that "detectable" and "seeds_needed" plan for
TOP1_BOUNDS = (-1.0, 1.0)  # where a difference of two accuracies lies, however few the seeds


def t_quantile(probability: float, df):
    return stats.t.ppf(probability, df)


def verdict(low: float, high: float) -> str:
    return "no clear difference" if low <= 0 <= high else "better" if low > 0 else "worse"


def detectable(se, df, level: float = LEVEL, power: float = POWER):
    """The smallest true difference an interval of standard error ``se`` and ``df`` degrees of
    freedom leaves zero out of with probability ``power``."""
    return (t_quantile(1 - (1 - level) / 2, df) + t_quantile(power, df)) * se


def _result(difference: float, se: float, df: float, level: float,
            bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict:
    """Mean +- t * se, within ``bounds``; no detectable difference without a spread."""
    half = float(t_quantile(1 - (1 - level) / 2, df)) * se
    low, high = max(bounds[0], difference - half), min(bounds[1], difference + half)
    return {"difference": difference, "interval": [low, high], "se": se, "df": df,
            "detectable": float(detectable(se, df, level)) if se else math.nan,
            "verdict": verdict(low, high)}


def over_seeds_and_crops(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> dict:
    """B minus A in top-1 from 0/1 correctness arrays of shape (seeds, crops), row s of each
    from seed s; the module's docstring gives the procedure. Also returns ``seed_sd``, the sd of
    the per-seed differences (NaN for one seed), and ``crop_se``, what sampling the crops adds
    to the standard error."""
    c = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    seeds, crops = c.shape
    mean = float(c.mean())
    by_crop = c.mean(axis=0)
    ms_crop = seeds * float(by_crop.var(ddof=1))
    if seeds == 1:
        result = _result(mean, math.sqrt(ms_crop / crops), crops - 1, level, TOP1_BOUNDS)
        return {**result, "seed_sd": math.nan, "crop_se": result["se"]}
    by_seed = c.mean(axis=1)
    ms_seed = crops * float(by_seed.var(ddof=1))
    residual = c - by_seed[:, None] - by_crop[None, :] + mean
    df_seed, df_crop, df_residual = seeds - 1, crops - 1, (seeds - 1) * (crops - 1)
    ms_residual = float((residual ** 2).sum()) / df_residual
    # var(mean) * seeds * crops = MS_s + (MS_c - MS_e): the per-seed differences' variance,
    # which holds the residual's share, plus the crops' component. Each component is dropped
    # when its estimate is negative: MS_s no lower than MS_e, or two seeds that happen to
    # differ by the same would leave no variance at all.
    total = max(ms_seed, ms_residual) + max(0.0, ms_crop - ms_residual)
    df = seeds - 1
    result = _result(mean, math.sqrt(total / (seeds * crops)), df, level, TOP1_BOUNDS)
    crop_variance = max(0.0, ms_crop - ms_residual) / seeds
    return {**result, "seed_sd": float(by_seed.std(ddof=1)),
            "crop_se": math.sqrt(crop_variance / crops)}


def over_seeds(a: list[float], b: list[float], level: float = LEVEL) -> dict:
    """B minus A for one value per seed (row s of each from seed s): paired t, or the sign test
    when every seed gives the same difference."""
    differences = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    seeds = len(differences)
    mean = float(differences.mean())
    if seeds < 2:
        return {"difference": mean, "interval": [math.nan, math.nan], "se": math.nan,
                "df": 0, "detectable": math.nan, "verdict": "one seed: no verdict",
                "seed_sd": math.nan}
    sd = float(differences.std(ddof=1))
    result = _result(mean, sd / math.sqrt(seeds), seeds - 1, level)
    if sd == 0 and mean != 0:
        sign_p = 2 * 0.5 ** seeds
        result["interval"] = [math.nan, math.nan]
        result["verdict"] = (("better" if mean > 0 else "worse") if sign_p < 1 - level else
                             f"every seed {mean:+g}: no verdict below "
                             f"{math.ceil(math.log2(2 / (1 - level)))} seeds")
    return {**result, "seed_sd": sd}


def pooled_sd(groups: list[list[float]]) -> tuple[float, int]:
    """The within-group standard deviation pooled over groups of two or more, and its degrees of
    freedom (NaN, 0 without such a group)."""
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    if not df:
        return math.nan, 0
    return math.sqrt(sum(float(np.var(g, ddof=1)) * (len(g) - 1)
                         for g in groups if len(g) > 1) / df), df


def seeds_needed(difference: float, spread: float, crop_se: float = 0.0,
                 level: float = LEVEL, power: float = POWER, most: int = 200) -> int | None:
    """Seeds per setting for a paired comparison to detect ``difference`` in test top-1 with
    probability ``power``, when one setting's test top-1 has standard deviation ``spread`` over
    seeds (two settings' runs independent: the per-seed differences' sd is spread * sqrt 2),
    and sampling the test crops adds ``crop_se``; t with n - 1 degrees of freedom. None if
    ``most`` seeds are not enough (the test set is too small for that difference)."""
    for seeds in range(2, most + 1):
        se = math.sqrt(2 * spread ** 2 / seeds + crop_se ** 2)
        if detectable(se, seeds - 1, level, power) <= difference:
            return seeds
    return None
