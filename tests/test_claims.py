"""inception-claims: the grid, the report from kept runs, the study's section from the report,
and the queue driver."""

import csv
import re
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from inception_pipeline import claims, claims_grid, claims_queue, claims_report
from inception_pipeline.claims_figure import curve_band
from inception_pipeline.errors import PipelineError


def seed_run(correct: np.ndarray, val=(0.1, 0.5), f1: float = 0.5) -> dict:
    return {"scores": {"top1_accuracy": float(correct.mean()), "macro_f1": f1},
            "correct": {f"c{i:04d}": bool(c) for i, c in enumerate(correct)},
            "val": list(val), "train": list(val)}


def runs_with(rates: list[float], crops: int = 400, seed: int = 0) -> dict[int, dict]:
    """One run per rate, each right on that share of the crops (independent draws)."""
    rng = np.random.default_rng(seed)
    return {s: seed_run(rng.random(crops) < rate) for s, rate in enumerate(rates)}


def test_speeds_count_a_run_that_never_reaches_the_threshold_as_its_epochs_plus_one():
    assert claims_report.speeds([0.02, 0.3, 0.5, 0.9]) == {
        "epochs_to_threshold": 3, "reached": True, "val_area": pytest.approx(0.43)}
    assert claims_report.speeds([0.02, 0.03, 0.49])["epochs_to_threshold"] == 4


def test_a_comparison_pairs_seeds_and_crops_and_refuses_different_crops():
    base, other = runs_with([0.5, 0.52, 0.48]), runs_with([0.9, 0.91, 0.89], seed=1)
    other[3] = seed_run(np.ones(400, bool))  # a seed the reference lacks: left out
    row = claims_report.compare_settings({"a": base, "b": other}, "a", "b")
    assert row["seeds"] == [0, 1, 2] and row["top1"]["verdict"] == "better"
    assert row["top1"]["interval"][0] > 0.2 and len(row["top1"]["per_seed"]) == 3
    assert row["epochs_to_threshold"]["verdict"] == "no clear difference"  # 2, 2, 2 each
    other[0] = seed_run(np.ones(300, bool))
    with pytest.raises(PipelineError, match="tested on different crops"):
        claims_report.compare_settings({"a": base, "b": other}, "a", "b")


def test_curve_band_averages_where_runs_overlap():
    runs = {0: seed_run(np.ones(4), val=(0.2, 0.4, 0.6)), 1: seed_run(np.ones(4), val=(0.4, 0.6))}
    epochs, mean, sd = curve_band(runs, "val")
    assert epochs.tolist() == [1, 2] and mean.tolist() == pytest.approx([0.3, 0.5])
    assert sd.tolist() == pytest.approx([0.1, 0.1])


def nested(dotted: dict) -> dict:
    """{"train.seed": 0} -> {"train": {"seed": 0}}, as params.yaml nests it."""
    params: dict = {}
    for key, value in dotted.items():
        section, name = key.split(".")
        params.setdefault(section, {})[name] = value
    return params


def write_run(folder, correct, val, params):
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "evaluate.json").write_text(json.dumps(
        {"top1_accuracy": float(np.mean(correct)), "macro_f1": 0.5}))
    with open(folder / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "crop", "actual", "predicted", "confidence"])
        for i, right in enumerate(correct):
            writer.writerow([i, f"c{i}", "a", "a" if right else "b", 0.9])
    for split in ("val", "train"):
        (folder / f"{split}_accuracy.tsv").write_text(
            "timestamp\tstep\taccuracy\n" + "".join(f"0\t{e}\t{v}\n" for e, v in enumerate(val)))


def test_report_from_kept_runs_names_missing_seeds_and_cells(in_tmp):
    grid = {"budget": {"train.epochs": 2}, "baseline": "default",
            "settings": {"default": {}, "categorical": {"train.loss": "categorical"},
                         "inception_v4": {"train.model": "inception_v4"}},
            "seeds": {"inception_v4": 1, "default": 2, "categorical": 2},  # the queue's order
            "pairs": [["inception_v4", "default"]]}
    (in_tmp / "claims").mkdir()
    (in_tmp / "claims/grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    rng = np.random.default_rng(0)
    for seed in range(2):
        write_run(in_tmp / f"claims/runs/default/seed-{seed}", rng.random(50) < 0.6, [0.3, 0.6],
                  nested(claims_grid.run_params(grid, "default", seed)))
    write_run(in_tmp / "claims/runs/categorical/seed-0", rng.random(50) < 0.4, [0.4, 0.45],
              nested(claims_grid.run_params(grid, "categorical", 0)))
    claims.main(["report"])
    report = (in_tmp / "claims/report.md").read_text()
    assert "| categorical | `train.loss=categorical` | 1 (2) |" in report
    assert "| inception_v4 | `train.model=inception_v4` | 0 (1) | | | | | not run yet |" in report
    assert "Fewer seeds than planned: categorical (1 of 2), inception_v4 (0 of 1)." in report
    assert "| categorical | default | 1 |" in report and "one seed: no verdict" in report
    rows = [line.split(" | ")[0] for line in report.splitlines() if line.startswith("| ")]
    assert rows[1:4] == ["| default", "| categorical", "| inception_v4"]  # settings' order
    default_row = next(line for line in report.splitlines() if line.startswith("| default |"))
    # Both seeds reach val top-1 0.5 at epoch 2, and end at 0.6 there.
    assert default_row.endswith("| 2, 2 | 0.600 |")
    assert "| never (3) |" in report
    assert "Never reached validation top-1 0.5 on this budget: categorical (seed 0)." in report
    assert (in_tmp / "claims/curves.png").stat().st_size > 0
    kept = json.loads((in_tmp / "claims/report.json").read_text())
    assert [len(s["runs"]) for s in kept["settings"]] == [2, 1, 0]
    assert claims_report.markdown(kept) == report  # report.md is report.json rendered
    grid = claims_grid.read_grid(in_tmp / "claims/grid.yaml")
    assert claims_grid.missing_runs(grid) == [
        ("inception_v4", 0), ("categorical", 1)]  # every setting's seed 0 first, seeds' order
    assert claims_grid.missing_runs(grid, only=["categorical"]) == [("categorical", 1)]
    with pytest.raises(PipelineError,
                       match="no setting bf16; it has inception_v4, default, categorical"):
        claims_grid.missing_runs(grid, only=["bf16", "default"])


def test_the_report_rewrites_the_study_between_its_grid_markers_only(in_tmp):
    grid = {"baseline": "default", "settings": {"default": {}, "categorical": {}},
            "seeds": {"default": 2, "categorical": 2}}
    (in_tmp / "claims").mkdir()
    (in_tmp / "claims/grid.yaml").write_text(yaml.safe_dump(grid))
    for setting in ("default", "categorical"):
        for seed in range(2):
            write_run(in_tmp / f"claims/runs/{setting}/seed-{seed}", np.ones(20, bool),
                      [0.3, 0.6], nested(claims_grid.run_params(grid, setting, seed)))
    (in_tmp / "docs").mkdir()
    begin, end = claims_report.markers("claims/grid.yaml")
    other = "\n".join(claims_report.markers("claims/other/grid.yaml"))
    (in_tmp / "docs/study.md").write_text(f"# Study\n\n{begin}\nold\n{end}\n\n{other}\n")
    claims.main(["report"])
    study = (in_tmp / "docs/study.md").read_text()
    report = json.loads((in_tmp / "claims/report.json").read_text())
    assert study == (f"# Study\n\n{begin}\n{claims_report.study_section(report)}\n{end}\n\n"
                     f"{other}\n")
    assert "| categorical | default | 2 | +0.000, +0.000 |" in study


def test_kept_runs_of_another_recipe_stop_the_report_with_one_line(in_tmp):
    """A budget changed after runs were kept would mix two recipes in one table."""
    grid = {"budget": {"train.epochs": 16}, "baseline": "default", "settings": {"default": {}},
            "seeds": {"default": 1}, "file": Path("claims/grid.yaml")}
    folder = in_tmp / "claims/runs/default/seed-0"
    write_run(folder, np.ones(10, bool), [0.5], {"train": {"epochs": 8, "seed": 0},
                                                  "model": {"head_bias": "prior"}})
    with pytest.raises(PipelineError, match=r"^claims/runs/default/seed-0 was run with "
                       r"train.epochs=8 \(the grid: 16\): move claims/runs/ aside"):
        claims_grid.load_runs(grid)
    (folder / "params.json").unlink()
    with pytest.raises(PipelineError, match=r"seed-0/params.json: missing"):
        claims_grid.load_runs(grid)


def test_a_grid_in_another_folder_keeps_its_runs_and_report_there(in_tmp):
    """Two budgets side by side: claims/grid.yaml and claims/longer/grid.yaml."""
    grid = {"budget": {"train.epochs": 16}, "baseline": "default", "settings": {"default": {}},
            "seeds": {"default": 1}}
    (in_tmp / "claims/longer").mkdir(parents=True)
    (in_tmp / "claims/longer/grid.yaml").write_text(yaml.safe_dump(grid))
    write_run(in_tmp / "claims/longer/runs/default/seed-0", np.ones(10, bool), [0.5],
              nested(claims_grid.run_params(grid, "default", 0)))
    claims.main(["report", "--grid", "claims/longer/grid.yaml"])
    report = (in_tmp / "claims/longer/report.md").read_text()
    assert "report --grid claims/longer/grid.yaml` from claims/longer/runs/." in report
    assert sorted(p.name for p in (in_tmp / "claims").iterdir()) == ["longer"]
    longer = claims_grid.read_grid(Path("claims/longer/grid.yaml"))
    assert claims_grid.run_name(longer, "default", 0).startswith("claims-longer-default-seed-0-")
    short = {**longer, "file": Path("claims/grid.yaml")}
    assert claims_grid.run_name(short, "default", 0).startswith("claims-default-seed-0-")
    # Another budget, another name: a finished run of the old budget is not the new one's.
    other_budget = {**short, "budget": {**short["budget"], "train.epochs": 99}}
    assert claims_grid.run_name(other_budget, "default", 0) != claims_grid.run_name(
        short, "default", 0)
    # The same params written in another order: the same name, so a rerun finds its runs.
    reordered = {**short, "budget": dict(reversed({"train.lr": 0.01, **short["budget"]}.items()))}
    assert claims_grid.run_name(reordered, "default", 0) == claims_grid.run_name(
        {**short, "budget": {"train.lr": 0.01, **short["budget"]}}, "default", 0)


def test_disagreements_compare_dotted_keys_with_nested_params():
    params = {"train": {"loss": "categorical", "seed": 1}, "model": {"head_bias": "prior"}}
    assert claims_grid.disagreements(params, {"train.loss": "categorical", "train.seed": 1}) == []
    assert claims_grid.disagreements(params, {"train.augment": False, "train.seed": 2}) == [
        "train.augment=null (the grid: false)", "train.seed=1 (the grid: 2)"]


def test_a_grid_naming_an_unknown_setting_is_one_line(in_tmp):
    (in_tmp / "grid.yaml").write_text(yaml.safe_dump(
        {"baseline": "default", "settings": {"default": {}}, "seeds": {"other": 1}}))
    with pytest.raises(PipelineError, match=r"grid.yaml: unknown setting\(s\) other$"):
        claims_grid.read_grid(in_tmp / "grid.yaml")


def test_queue_states_read_dvc_queue_status(monkeypatch):
    """A name queued again after a failed try reads as queued; other experiments are kept."""
    status = """Task     Name                          Created    Status
b9934f5  claims-categorical-seed-0     07:07 AM   Running
4a74533  claims-default-seed-1         07:09 AM   Queued
78e62e3  claims-default-seed-0         07:07 AM   Success
1c2d3e4  claims-default-seed-1         06:50 AM   Failed

Worker status: 1 active, 0 idle
"""
    monkeypatch.setattr(claims_queue, "dvc", lambda *args, **kwargs: status)
    assert claims_queue.queue_states() == {"claims-categorical-seed-0": "Running",
                                     "claims-default-seed-1": "Queued",
                                     "claims-default-seed-0": "Success"}


def test_a_run_left_running_without_a_worker_is_killed_and_reads_failed(monkeypatch):
    """After a restart DVC still lists the interrupted run as Running: it would never end."""
    status = """Task     Name                          Created    Status
04f2d84  claims-default-seed-1         07:35 AM   Running
c5dca85  claims-default-seed-2         07:35 AM   Queued

Worker status: 0 active, 0 idle
"""
    calls = []

    def fake_dvc(*args, **kwargs):
        calls.append(args)
        return status

    monkeypatch.setattr(claims_queue, "dvc", fake_dvc)
    assert claims_queue.queue_states_after_restart() == {"claims-default-seed-1": "Failed",
                                                   "claims-default-seed-2": "Queued"}
    assert calls == [("queue", "status"), ("queue", "kill", "claims-default-seed-1")]


def test_overrides_carry_budget_setting_and_seed():
    """A budget may set data stages' params too: -S sets any key of params.yaml."""
    grid = {"budget": {"train.epochs": 8, "data.dir": "data/hard", "sample.seed": 3},
            "settings": {"no_augmentation": {"train.augment": False}}}
    assert claims_grid.overrides(grid, "no_augmentation", 2) == [
        "train.epochs=8", 'data.dir="data/hard"', "sample.seed=3", "train.augment=false",
        "train.seed=2"]


@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_claims_command_on_a_tiny_grid(project_copy):
    """`inception-claims run` on the tiny project: queues each (setting, seed) as a DVC
    experiment, keeps every run's results in claims/runs/, writes the report; run again, it
    queues nothing."""
    import sys
    from pathlib import Path

    repo = project_copy
    # A data stage's param in the budget reaches the runs too (the tiny project's own value).
    grid = {"budget": {"train.epochs": 1, "train.warmup_epochs": 0, "sample.images_per_class": 6},
            "baseline": "default",
            "settings": {"default": {}, "categorical": {"train.loss": "categorical"}},
            "seeds": {"default": 1, "categorical": 1}}
    (repo.path / "claims").mkdir()
    (repo.path / "claims/grid.yaml").write_text(yaml.safe_dump(grid))
    repo.commit("tiny claims grid")
    claims_cli = str(Path(sys.executable).parent / "inception-claims")
    output = repo.run(claims_cli, "run", timeout=1500)
    name = claims_grid.run_name({**grid, "file": Path("claims/grid.yaml")}, "default", 0)
    assert f"claims: {name} done" in output, output
    log = repo.dvc("queue", "logs", name)
    assert "Running stage 'evaluate'" in log and "Running stage 'export'" not in log, log
    for setting in ("default", "categorical"):
        folder = repo.path / f"claims/runs/{setting}/seed-0"
        assert sorted(p.name for p in folder.iterdir()) == [
            "evaluate.json", "params.json", "predictions.csv", "train_accuracy.tsv",
            "val_accuracy.tsv"]
        kept = json.loads((folder / "params.json").read_text())
        assert claims_grid.disagreements(kept, claims_grid.run_params(grid, setting, 0)) == []
        assert kept["train"]["epochs"] == 1 and kept["sample"]["images_per_class"] == 6
        scores = json.loads((folder / "evaluate.json").read_text())
        assert scores["test_images"] == len((folder / "predictions.csv").read_text()
                                            .splitlines()) - 1
        assert len((folder / "val_accuracy.tsv").read_text().splitlines()) == 2  # 1 epoch
    report = (repo.path / "claims/report.md").read_text()
    assert "| categorical | `train.loss=categorical` | 1 (1) |" in report
    assert "| categorical | default | 1 |" in report
    # Different runs, not one result copied: the two losses give different test probabilities.
    assert (repo.path / "claims/runs/default/seed-0/predictions.csv").read_text() != (
        repo.path / "claims/runs/categorical/seed-0/predictions.csv").read_text()
    assert "every run of the grid is in claims/runs/" in repo.run(claims_cli, "run")


ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(path.relative_to(ROOT) for path in (ROOT / "claims").glob("**/grid.yaml")
                   if (path.parent / "report.json").exists())


@pytest.mark.parametrize("grid_file", COMMITTED, ids=str)
def test_the_committed_report_is_what_the_committed_runs_give(grid_file, monkeypatch):
    monkeypatch.chdir(ROOT)
    grid = claims_grid.read_grid(grid_file)
    report = claims_report.build(grid, claims_grid.load_runs(grid))
    committed = json.loads((grid_file.parent / "report.json").read_text(encoding="utf-8"))
    assert json.loads(json.dumps(report)) == committed
    assert (grid_file.parent / "report.md").read_text(encoding="utf-8") == (
        claims_report.markdown(committed))


def test_the_studys_claims_are_the_reports_and_hold_no_other_figure():
    """docs/study.md's claims section: each grid's tables are its report.json rendered, and
    the prose around them quotes no result (a figure with three decimals)."""
    study = (ROOT / "docs/study.md").read_text(encoding="utf-8")
    for grid_file in COMMITTED:
        report = json.loads((ROOT / grid_file.parent / "report.json").read_text(encoding="utf-8"))
        assert claims_report.with_study_section(study, report) in {study, None}, grid_file
    assert "<!-- claims:begin claims/grid.yaml -->" in study
    section = study[study.index("## The study's claims"):study.index("## Comparing runs")]
    prose = re.sub(r"<!-- claims:begin (\S+) -->.*?<!-- claims:end \1 -->", "", section,
                   flags=re.S)
    assert re.findall(r"\d\.\d{3}", prose) == []
    assert prose.count("<!-- claims:") == 0
