"""dvc.yaml and the code agree: where files are, what each stage depends on, which params keys
it reads, and the house rules (no stage imports another, no import circles, models/ stands
alone). Static checks: nothing here runs a stage."""

import ast
import subprocess
from pathlib import Path

import pytest
import yaml

from inception_pipeline import layout
from inception_pipeline.checkpoints import run_fingerprint, stage_dependencies

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = DVC["stages"]
LIBRARY = "inception_pipeline"
# They decide whether a stage runs or fails and where files go, never what it writes.
PLUMBING = {f"{LIBRARY}.errors", f"{LIBRARY}.params", f"{LIBRARY}.layout"}


def module_file(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def project_modules() -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for package in ("stages", LIBRARY, "models")
                  for p in (ROOT / package).glob("*.py"))


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports, at the top or inside functions."""
    known, found = set(project_modules()), set()
    for node in ast.walk(ast.parse(module_file(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from package import module` names a module; `from module import name` does not
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found - {module}


def shaping_closure(module: str) -> set[str]:
    """Every project module whose code ``module`` runs, through imports, except plumbing."""
    seen, todo = set(), [module]
    while todo:
        for imported in imports_of(todo.pop()) - PLUMBING - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def layout_paths() -> set[str]:
    values = set()
    for value in vars(layout).values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, Path):
                values.add(item.as_posix())
    return values


def entries(stage: dict, key: str) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in stage.get(key, [])]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_path_of_a_stage_is_a_layout_value_or_code(name):
    stage, paths = STAGES[name], layout_paths()
    assert stage["cmd"] == f"python -m stages.{name}" and module_file(f"stages.{name}").is_file()
    for out in entries(stage, "outs") + entries(stage, "metrics") + entries(stage, "plots"):
        assert out in paths, f"{name}: output {out} is not in inception_pipeline/layout.py"
    for dep in entries(stage, "deps"):
        is_code = (ROOT / dep).exists() and dep.split("/")[0] in ("stages", LIBRARY, "models")
        assert is_code or dep in paths or dep == "${data.dir}", f"{name}: dep {dep}"


def test_small_results_travel_with_git_and_train_keeps_its_run_cache():
    """Uncached outputs are the files git holds, so a fresh clone can compare with any commit;
    cached ones are git-ignored. DVC keeps a stage's run cache only when its uncached outputs
    are declared under metrics: or plots:, so train declares DVCLive's files there
    (tests/test_e2e.py restores a train run from the run cache)."""
    uncached, cached = set(), set()
    for stage in STAGES.values():
        for key in ("outs", "metrics", "plots"):
            for out in stage.get(key, []):
                path, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
                (uncached if options.get("cache") is False else cached).add(path)
    ignored = set(subprocess.run(["git", "check-ignore", *sorted(cached | uncached)], cwd=ROOT,
                                 capture_output=True, text=True).stdout.split())
    assert ignored == cached
    train = STAGES["train"]
    assert all(isinstance(out, str) for out in train["outs"])  # every plain output cached
    assert {layout.TRAIN_METRICS.as_posix(), layout.TRAIN_PLOTS_DIR.as_posix()} <= uncached


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_lists_exactly_the_library_code_that_shapes_its_output(name):
    """Editing a module a stage runs must rerun the stage (shard naming reruns crop), and a
    module it does not run must not."""
    closure = shaping_closure(f"stages.{name}")
    code_deps = {dep for dep in entries(STAGES[name], "deps")
                 if dep.split("/")[0] in ("stages", LIBRARY, "models")}
    expected = {f"stages/{name}.py"}
    expected |= {module_file(m).relative_to(ROOT).as_posix() for m in closure
                 if m.startswith(LIBRARY + ".")}
    if any(m == "models" or m.startswith("models.") for m in closure):
        expected.add("models")  # the registry loads network modules by name
    assert code_deps == expected


def test_no_stage_imports_another_and_the_library_never_imports_a_stage():
    for module in project_modules():
        stages = {m for m in imports_of(module) if m.startswith("stages.")}
        assert not stages, f"{module} imports {stages}"


def test_models_import_nothing_from_the_pipeline():
    for module in (m for m in project_modules() if m.split(".")[0] == "models"):
        assert all(m.split(".")[0] == "models" for m in imports_of(module)), module


def test_no_import_circles():
    graph = {m: imports_of(m) for m in project_modules()}

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(m == target or (m not in seen and not seen.add(m) and reaches(m, target, seen))
                   for m in graph[start])

    circles = [m for m in graph if reaches(m, m, set())]
    assert not circles


def params_read(module: str) -> tuple[set[str], set[str]]:
    """(``group.key`` read as ``params["group"]["key"]`` or through a name bound to
    ``params["group"]``, groups used whole) in a stage module, found in its source."""
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))

    def group_of(node) -> str | None:
        """"g" for ``params["g"]`` or ``load_params()["g"]``."""
        if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                and (isinstance(node.value, ast.Name) and node.value.id == "params"
                     or isinstance(node.value, ast.Call)
                     and getattr(node.value.func, "id", "") == "load_params")):
            return node.slice.value
        return None

    aliases = {}  # a name bound to a group anywhere in the module (also a function's argument)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else [
                node.targets[0]]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for target, value in zip(targets, values, strict=False):
                if isinstance(target, ast.Name) and (group := group_of(value)):
                    aliases[target.id] = group
    keys, whole = set(), set()
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(tree):
        group = group_of(node) or (aliases.get(node.id) if isinstance(node, ast.Name) else None)
        if group is None or isinstance(parents.get(node), ast.Assign) and node in [
                getattr(parents[node], "value", None)]:
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node and isinstance(
                parent.slice, ast.Constant):
            keys.add(f"{group}.{parent.slice.value}")
        elif not (isinstance(parent, ast.Tuple) and isinstance(parents.get(parent), ast.Assign)
                  ) and not isinstance(getattr(node, "ctx", None), ast.Store) and not (
                      isinstance(parent, ast.arg)):
            whole.add(group)
    return keys, whole


# The resume fingerprint hashes these groups whole: a checkpoint of other settings is never
# resumed. It decides where a run starts, not what it computes, so the stage need not list them.
FINGERPRINTED = {"train": {"train", "model"}}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_reads_exactly_the_params_keys_dvc_yaml_lists(name):
    keys, whole = params_read(f"stages.{name}")
    listed = set(STAGES[name].get("params", []))
    report_header = {k for k in listed if name == "report" and k.startswith("train.")}
    assert keys == listed, (sorted(keys - listed), sorted(listed - keys - report_header))
    assert whole <= FINGERPRINTED.get(name, set()), f"{name} uses params group(s) {whole} whole"


def test_params_reader_sees_keys_through_names_and_whole_groups():
    """The static reader above, on a stage of its own (so that the contract test has teeth)."""
    source = ('def main():\n    params = load_params()\n    cfg, data = params["train"], '
              'params["data"]\n    x = cfg["lr"] + params["split"]["seed"]\n    f(data)\n')
    module = ROOT / "stages" / "_probe_for_test.py"
    try:
        module.write_text(source, encoding="utf-8")
        assert params_read("stages._probe_for_test") == ({"train.lr", "split.seed"}, {"data"})
    finally:
        module.unlink()


def test_the_resume_fingerprint_covers_every_train_dependency(tmp_path, monkeypatch):
    """Built from dvc.yaml's train deps: editing any listed file, code or data, gives another
    fingerprint, so a checkpoint of other code or data is never resumed."""
    monkeypatch.chdir(tmp_path)
    deps = entries(STAGES["train"], "deps")
    for dep in deps:  # the code as it is; a stand-in for each data file
        source = ROOT / dep
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes() if dep.endswith(".py") or source.is_dir()
                               else dep.encode())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC), encoding="utf-8")
    files = stage_dependencies(Path("dvc.yaml"), "train")
    assert {f.as_posix().split("/")[0] for f in files} == {d.split("/")[0] for d in deps}
    assert Path("models/inception_v4.py") in files and Path("stages/train.py") in files
    before = run_fingerprint({}, files)
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert run_fingerprint({}, files) != before, path
        path.write_bytes(original)
