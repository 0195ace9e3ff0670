"""The README and docs agree with the committed results: every figure they give of the committed
run, the model artifact or the claims grid is read here from metrics/, plots/, claims/ or
dvc.lock, so that a new run (or a new grid) whose figures differ fails until the text follows.
Figures are compared as the text rounds them. Every relative link and anchor resolves, since
the docs link to one another rather than repeat a figure."""

import csv
import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
WITHOUT_OFFSET = ROOT / "claims/without-bn-offset/runs"
# How docs/study.md names the grid's settings.
SETTINGS = {"ResNet50": "resnet50_binary", "ResNet50, binary cross-entropy": "resnet50_binary",
            "ResNet50, categorical cross-entropy": "resnet50_categorical",
            "Inception-v3": "inception_v3", "Inception-v4": "inception_v4"}


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def read_json(relative: str) -> dict:
    return json.loads(text(ROOT / relative))


def read_csv(path: Path, delimiter: str = ",") -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match[1]


def tables(markdown: str) -> list[list[list[str]]]:
    """Every markdown table: its rows of cells, header first (the |---| line left out)."""
    found, rows = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|-"):
                rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            found.append(rows)
            rows = []
    return found


def number(n: int) -> str:
    return f"{n:,}"


def val_accuracy(setting: str, seed: int) -> list[float]:
    path = WITHOUT_OFFSET / setting / f"seed-{seed}" / "val_accuracy.tsv"
    return [float(row["accuracy"]) for row in read_csv(path, "\t")]


def test_the_hard_benchmarks_split_sizes_are_the_committed_runs():
    split = read_json("metrics/split.json")
    hard = " ".join(section(text(ROOT / "docs/study.md"), "The hard benchmark").split())
    assert (f"{number(split['train'])} training crops" in hard
            and f"{number(split['test'])} test crops" in hard)
    grid_tests = {json.loads(text(path))["test_images"]
                  for path in (ROOT / "claims/hard-ablation/runs").glob("*/seed-*/evaluate.json")}
    assert len(grid_tests) == 1, grid_tests  # every run of the grid on the same test crops
    assert f"test on {number(grid_tests.pop())} crops" in hard


def test_readme_results_are_the_committed_runs():
    scores, split = read_json("metrics/evaluate.json"), read_json("metrics/split.json")
    classes = len(read_csv(ROOT / "metrics/per_class.csv"))
    results = section(text(ROOT / "README.md"), "Results of the default run")
    [table] = tables(results)
    assert table[0][0] == f"test split ({number(scores['test_images'])} crops, {classes} classes)"
    assert scores["test_images"] == split["test"]
    values = {row[0]: row[1] for row in table[1:]}
    assert values == {
        "top-1 accuracy": f"**{scores['top1_accuracy']:.3f}** (chance: {1 / classes:.3f})",
        "top-5 accuracy": f"{scores['top5_accuracy']:.3f}",
        "macro-F1": f"{scores['macro_f1']:.3f}"}
    assert f"trained from scratch on {number(split['train'])} crops" in " ".join(results.split())


def test_benchmarks_epoch_times_are_the_committed_runs():
    """BENCHMARKS.md's `make repro` section gives the committed run's epoch times."""
    seconds = [float(row["epoch_seconds"]) for row in read_csv(
        ROOT / "metrics/train/plots/metrics/train/epoch_seconds.tsv", delimiter="\t")]
    repro = " ".join(section(text(ROOT / "BENCHMARKS.md"), "`make repro` from a fresh clone")
                     .split())
    assert (f"the committed run's epochs took {min(seconds):.0f}-{max(seconds):.0f} s for the "
            f"same") in repro
    assert f"{sum(seconds):.0f} s in all, the first {seconds[0]:.0f} s)" in repro
    assert f"Three runs of the same command at {len(seconds)} epochs" in repro


def test_split_sizes_in_the_docs_are_the_committed_split():
    split = read_json("metrics/split.json")
    expected = f"{number(split['train'])} train / {number(split['val'])} val / " \
               f"{number(split['test'])} test crops"
    for doc in DOCS:
        for found in re.findall(r"[\d,]+ train / [\d,]+ val / [\d,]+ test crops",
                                " ".join(text(doc).split())):
            assert found == expected, doc.name


def test_readme_claims_budget_is_the_grids():
    budget = yaml.safe_load(text(ROOT / "claims/grid.yaml"))["budget"]
    claims = " ".join(section(text(ROOT / "README.md"), "The claims").split())
    assert f"Its budget is {budget['train.epochs']} epochs" in claims


def test_defaults_in_the_docs_are_params_yamls():
    """"`crop.max_side` pixels (default 299)" and the like, and "the default N epochs"."""
    params = yaml.safe_load(text(ROOT / "params.yaml"))
    found = []
    for doc in DOCS:
        found += [("train.epochs", n, "") for n in
                  re.findall(r"[Tt]he default (\d+) epochs", " ".join(text(doc).split()))]
        found += re.findall(r"`(\w+\.\w+)`[^`(]{0,20}\(default ([\d.]+)( MP)?",
                            " ".join(text(doc).split()))
    assert len(found) >= 3  # pipeline.md's crop defaults at least
    for key, value, unit in found:
        group, name = key.split(".")
        assert float(value) * (1e6 if unit else 1) == params[group][name], key


def test_model_file_size_is_the_committed_models():
    """BENCHMARKS.md's size of the file the train stage writes, against dvc.lock's."""
    lock = yaml.safe_load(text(ROOT / "dvc.lock"))
    [size] = [out["size"] for out in lock["stages"]["train"]["outs"]
              if out["path"] == "data/model/model.keras"]
    model_file = section(text(ROOT / "BENCHMARKS.md"), "Start-up costs")
    match = re.search(r"The default run's file \([^)]*\): \*\*([\d.]+) MB\*\*", model_file)
    assert match and match[1] == f"{size / 1e6:.1f}"


def test_readme_predict_example_is_what_evaluate_recorded():
    """Each box's top class and probability in the README's `inception-predict` example, against
    the committed plots/predictions.csv for the crops of that photo (boxes in file order)."""
    readme = text(ROOT / "README.md")
    [example] = re.findall(r"```\n\$ inception-predict (\S+) .*?\n(.*?)```", readme, re.S)
    image, output = example
    source = image.removeprefix("data/sample/")
    recorded = sorted((row for row in read_csv(ROOT / "plots/predictions.csv")
                       if row["crop"].rsplit("-", 1)[0] == source),
                      key=lambda row: int(row["crop"].rsplit("-", 1)[1]))
    lines = output.splitlines()
    boxes = [i for i, line in enumerate(lines) if line.startswith(f"{image} [box ")]
    shown = [tuple(lines[i + 1].split()) for i in boxes]
    assert recorded and shown == [(f"{float(row['confidence']):.4f}", row["predicted"])
                                  for row in recorded]


def test_study_curves_of_the_grid_without_the_offset_are_its_runs():
    """docs/study.md's rows marked "(grid without the offset, seed N)": validation top-1 at the
    epochs of the table's header, against the run's val_accuracy.tsv."""
    checked = 0
    for table in tables(text(ROOT / "docs/study.md")):
        epochs = {i: int(cell) for i, cell in enumerate(table[0]) if cell.isdigit()}
        for row in table[1:]:
            match = re.fullmatch(r"(.+?)(?:, \d+ epochs)? \(grid without the offset, seed (\d)\)",
                                 row[0])
            if not match:
                continue
            curve = val_accuracy(SETTINGS[match[1]], int(match[2]))
            for i, epoch in epochs.items():
                if row[i]:
                    assert row[i].strip("*") == f"{curve[epoch - 1]:.3f}", (row[0], epoch)
                    checked += 1
    assert checked >= 16


def test_study_best_validation_scores_without_the_offset_are_its_runs():
    [table] = [t for t in tables(text(ROOT / "docs/study.md"))
               if t[0] == ["network (grid without the offset)", "best validation top-1 per seed"]]
    for name, values in table[1:]:
        setting = SETTINGS[name]
        seeds = sorted(int(p.name.removeprefix("seed-")) for p in (WITHOUT_OFFSET / setting).iterdir())
        assert values == ", ".join(f"{max(val_accuracy(setting, s)):.3f}" for s in seeds), name


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    heading = unicodedata.normalize("NFC", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(doc):
    for target in re.findall(r"\]\(([^)\s]+)\)", text(doc)):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: {target}"
        if fragment:
            headings = re.findall(r"^#+ (.+)$", text(linked), re.M)
            assert fragment in {anchor(h) for h in headings}, f"{doc.name}: {target}"


def test_readme_expectations_are_the_hard_ablations_means():
    """README's "What to expect": the study's recipe's mean test top-1 on the hard benchmark and
    the range of the other settings' means, as claims/hard-ablation/report.json has them."""
    readme = " ".join(text(ROOT / "README.md").split())
    match = re.search(r"test top-1 is (\d\.\d\d) with the study's recipe and (\d\.\d\d)-(\d\.\d\d) "
                      r"with the recipes of \[claims/hard-ablation/report\.md\]", readme)
    assert match, "README's What to expect names no hard-ablation figures"
    means = {s["name"]: s["top1_accuracy"][0] for s in
             read_json("claims/hard-ablation/report.json")["settings"] if s["runs"]}
    others = [mean for name, mean in means.items() if name != "study"]
    assert match.groups() == (f"{means['study']:.2f}", f"{min(others):.2f}", f"{max(others):.2f}")


VALIDATION_CROPS = 216  # the hard ablation's validation split
OFF_REGULARISERS = ("scale_jitter", "color_jitter", "ema", "weight_decay", "label_smoothing",
                    "random_erasing", "mixup", "cutmix")


def test_the_defaults_docs_study_derives_from_the_ablation_hold_there():
    """docs/study.md's "How the defaults follow from it": params.yaml trains with flips and over
    more epochs than `base`, up to `longer`'s, exactly `epochs16`'s, because each of those ends
    above `base` in mean validation top-1 at the last epoch on the hard ablation
    (claims/hard-ablation/report.json), and `epochs14` does not, as study.md says;
    the verdict it gives `longer`'s test top-1 difference is the report's; the regularisers
    params.yaml leaves off do not end above `base`. "Above" means by more than one validation
    crop."""
    params = yaml.safe_load(text(ROOT / "params.yaml"))
    report = read_json("claims/hard-ablation/report.json")
    settings = {s["name"]: s for s in report["settings"]}
    budget = yaml.safe_load(text(ROOT / "claims/hard-ablation/grid.yaml"))["budget"]
    study = " ".join(text(ROOT / "docs/study.md").split())
    assert budget["train.epochs"] < params["train"]["epochs"] <= \
        settings["longer"]["params"]["train.epochs"]
    assert params["train"]["flip"] is True and settings["flip"]["params"]["train.flip"] is True
    assert params["train"]["epochs"] == settings["epochs16"]["params"]["train.epochs"]
    # "Above the baseline": by more than one validation crop; every validation top-1 the
    # baseline's runs recorded is a whole number of crops out of VALIDATION_CROPS.
    assert f"more than one of the {VALIDATION_CROPS} validation crops" in study
    for seed in range(3):
        for row in read_csv(ROOT / f"claims/hard-ablation/runs/base/seed-{seed}/val_accuracy.tsv",
                            delimiter="\t"):
            crops = float(row["accuracy"]) * VALIDATION_CROPS
            assert abs(crops - round(crops)) < 1e-3, row
    above = {name: s["val_last"][0] > settings["base"]["val_last"][0] + 1 / VALIDATION_CROPS
             for name, s in settings.items()}
    for name in ("longer", "epochs16", "flip"):
        assert above[name], name
    assert ("`epochs14`, two fewer, does not:" in study) == (not above["epochs14"])
    comparisons = {(c["other"], c["reference"]): c for c in report["comparisons"] if c["seeds"]}
    verdicts = {pair: c["top1"]["verdict"] for pair, c in comparisons.items()}
    assert ('its test top-1 difference from the baseline has the verdict "better"' in study) == (
        verdicts["longer", "base"] == "better")
    # The regularisers params.yaml leaves off: each has every planned seed, does not end above
    # `base` in mean validation top-1 and has no "better" verdict, as study.md says.
    assert "each end below the baseline, or within one validation crop of it, in mean " \
           "validation top-1 at the last epoch over their three seeds, and none has the " \
           "verdict \"better\" in test top-1" in study
    for name in OFF_REGULARISERS:
        (key, value), = settings[name]["params"].items()
        group, param = key.split(".")
        assert value and not params[group][param], key
        assert len(settings[name]["runs"]) == settings[name]["planned"] == 3, name
        assert not above[name], name
        assert verdicts[name, "base"] != "better", name
        assert f"`{name}`" in study, name
    worse = [name for name in OFF_REGULARISERS if verdicts[name, "base"] == "worse"]
    assert "(" + " and ".join(f"`{name}`" for name in worse) + ' have "worse")' in study, worse
    assert ("`ema`'s validation curve rises faster" in study) == (
        comparisons["ema", "base"]["val_area"]["verdict"] == "faster")


def test_docs_study_gives_the_demo_grids_flips_verdict():
    """docs/study.md's sentence on flips on the demo is claims/report.json's comparison."""
    study = " ".join(text(ROOT / "docs/study.md").split())
    match = re.search(r"\(`flips` in claims/grid\.yaml\) against `default`: test top-1 difference "
                      r"([+-]\d\.\d{3}) \[([+-]\d\.\d{3}), ([+-]\d\.\d{3})\] over (\d+) seeds, "
                      r"\"([a-z ]+)\" \(\[claims/report\.md\]\(\.\./claims/report\.md\)\): "
                      r"they (do not lose|lose) there", study)
    assert match, "docs/study.md gives no verdict for flips on the demo"
    flips, = [c for c in read_json("claims/report.json")["comparisons"]
              if (c["other"], c["reference"]) == ("flips", "default")]
    low, high = flips["top1"]["interval"]
    assert match.groups() == (f"{flips['top1']['difference']:+.3f}", f"{low:+.3f}", f"{high:+.3f}",
                              str(len(flips["seeds"])),
                              flips["top1"]["verdict"],
                              "lose" if flips["top1"]["verdict"] == "worse" else "do not lose")
