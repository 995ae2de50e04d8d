"""``fluidv validate`` as users run it: several files and folders checked as one set,
offline, with the checks ``fluidv run`` makes before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

#: The console script pip installed next to this interpreter.
FLUIDV = [os.path.join(os.path.dirname(sys.executable), "fluidv")]

HEAD = "apiVersion: data.fluid.io/v1alpha1\n"


def fluidv(*args: str, home: str) -> subprocess.CompletedProcess:
    return subprocess.run(FLUIDV + list(args), env=dict(os.environ, FLUIDV_HOME=home), capture_output=True,
                          text=True, timeout=120)


def dataset(name: str = "d") -> str:
    return f"{HEAD}kind: Dataset\nmetadata: {{name: {name}}}\nspec: {{}}\n"


def process(name: str, *, after: str | None = None, function: str = "fluid_core.demo.pipeline:generate",
            dataset_name: str = "d") -> str:
    run_after = f"  runAfter: {{kind: DataProcess, name: {after}}}\n" if after else ""
    return (f"{HEAD}kind: DataProcess\nmetadata: {{name: {name}}}\nspec:\n  dataset: {{name: {dataset_name}}}\n"
            f"{run_after}  processor: {{function: \"{function}\"}}\n")


def problems_of(stderr: str) -> set[str]:
    """``Kind/name: field: message`` of each ``invalid`` line (its file and line left out)."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith("invalid "):
            what, _, rest = line.removeprefix("invalid ").partition(" (")
            found.add(f"{what}: {rest.split('): ', 1)[1]}")
    return found


def test_it_checks_what_run_checks_with_every_file_and_field(tmp_path):
    """The problems ``fluidv run`` refuses a flow for (a runAfter to a missing step, an
    unknown processor module, a load path that does not exist) are the ones validate
    reports, each with its file, line and field; run starts nothing."""
    flow = tmp_path / "flow.yaml"
    flow.write_text("---\n".join([
        dataset(),
        process("gen", function="no_such_module_anywhere:go"),
        f"{HEAD}kind: DataLoad\nmetadata: {{name: load}}\nspec:\n  dataset: {{name: d}}\n"
        f"  runAfter: {{kind: DataProcess, name: nowhere}}\n  target: [{{path: {tmp_path / 'missing.parquet'}}}]\n",
    ]))
    checked = fluidv("validate", str(flow), home=str(tmp_path / "home"))
    assert checked.returncode == 1, checked.stderr
    assert f"ok      Dataset/d ({flow}:1)" in checked.stdout
    assert "DataProcess/gen" not in checked.stdout and "DataLoad/load" not in checked.stdout
    lines = checked.stderr.splitlines()
    assert (f"invalid DataProcess/gen ({flow}:6): spec.processor.function: cannot import "
            "'no_such_module_anywhere': No module named 'no_such_module_anywhere'") in lines
    assert (f"invalid DataLoad/load ({flow}:13): spec.runAfter: no DataProcess 'nowhere' in this flow; "
            "runAfter names an operation of the flow") in lines
    assert (f"invalid DataLoad/load ({flow}:13): spec.target[0].path: {tmp_path / 'missing.parquet'} does not "
            "exist; give the path of a file or directory to load") in lines
    assert lines[-1] == "error: 3 problem(s) found"

    workdir = tmp_path / "wd"
    ran = subprocess.run(FLUIDV + ["run", str(flow), "--workdir", str(workdir)], capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 1 and "the flow was rejected before anything ran" in ran.stderr
    refused = {line for line in ran.stderr.splitlines() if line.count(": ") >= 2 and not line.startswith("error")}
    assert refused == problems_of(checked.stderr)
    assert not (workdir / "cluster.yaml").exists()


def test_files_and_folders_are_one_set(tmp_path):
    """A runAfter may name a step of another file; a folder gives its .yaml, .yml and
    .json files (its subfolders' with -R, as ``kubectl apply -f DIR -R``)."""
    home = str(tmp_path / "home")
    first = tmp_path / "first.yaml"
    first.write_text(dataset() + "---\n" + process("gen"))
    folder = tmp_path / "more"
    (folder / "deeper").mkdir(parents=True)
    (folder / "train.yml").write_text(process("train", after="gen", function="fluid_core.demo.pipeline:train"))
    (folder / "features.json").write_text(json.dumps({
        "apiVersion": "data.fluid.io/v1alpha1", "kind": "DataProcess", "metadata": {"name": "feat"},
        "spec": {"dataset": {"name": "d"}, "runAfter": {"kind": "DataProcess", "name": "gen"},
                 "processor": {"function": "fluid_core.demo.pipeline:features"}}}))
    (folder / "notes.txt").write_text("not a manifest")
    (folder / "deeper" / "eval.yaml").write_text(process("eval", after="train",
                                                         function="fluid_core.demo.pipeline:evaluate"))

    alone = fluidv("validate", str(folder / "train.yml"), home=home)
    assert alone.returncode == 1
    assert problems_of(alone.stderr) == {
        "DataProcess/train: spec.dataset.name: no Dataset default/d in this flow; declare it (kind: Dataset) "
        "or fix the name",
        "DataProcess/train: spec.runAfter: no DataProcess 'gen' in this flow; runAfter names an operation of the flow",
    }

    together = fluidv("validate", str(first), str(folder), home=home)
    assert together.returncode == 0, together.stderr
    assert together.stdout.splitlines() == [
        f"ok      Dataset/d ({first}:1)", f"ok      DataProcess/gen ({first}:6)",
        f"ok      DataProcess/feat ({folder / 'features.json'}:1)", f"ok      DataProcess/train ({folder / 'train.yml'}:1)",
    ]
    recursive = fluidv("validate", "-R", "-f", str(first), "-f", str(folder), home=home)
    assert recursive.returncode == 0, recursive.stderr
    assert f"ok      DataProcess/eval ({folder / 'deeper' / 'eval.yaml'}:1)" in recursive.stdout

    eval_alone = fluidv("validate", str(first), str(folder / "deeper"), home=home)
    assert eval_alone.returncode == 1  # train is in the folder not given
    assert "DataProcess/eval: spec.runAfter: no DataProcess 'train' in this flow" in "\n".join(
        problems_of(eval_alone.stderr))


def test_unreadable_paths_are_listed_and_the_rest_still_checked(tmp_path):
    home = str(tmp_path / "home")
    good = tmp_path / "good.yaml"
    good.write_text(dataset())
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sub").mkdir()
    (empty / "sub" / "x.yaml").write_text(dataset("x"))
    result = fluidv("validate", str(good), str(broken), str(empty), str(tmp_path / "gone.yaml"), home=home)
    assert result.returncode == 1
    assert result.stdout == f"ok      Dataset/d ({good}:1)\n"
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"error   {broken} is not valid YAML:")
    assert f"error   {empty} is a folder with no .yaml, .yml, .json file in it (-R reads its subfolders too)" in errors
    assert f"error   {tmp_path / 'gone.yaml'} does not exist" in errors
    assert errors[-1] == "error: 3 problem(s) found"
    nothing = fluidv("validate", home=home)
    assert nothing.returncode == 2 and "give at least one file or folder" in nothing.stderr


def test_an_unknown_field_names_the_one_meant(tmp_path):
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text(f"{HEAD}kind: VineyardRuntime\nmetadata: {{name: d}}\nspec:\n  replica: 2\n"
                       "  tieredstore: {levels: [{mediumtype: MEM, quota: 1GB}]}\n")
    result = fluidv("validate", str(runtime), home=str(tmp_path / "home"))
    assert result.returncode == 1
    assert problems_of(result.stderr) == {
        "VineyardRuntime/d: spec.replica: unknown field `replica`; did you mean `replicas`?",
        "VineyardRuntime/d: spec.tieredstore.levels[0].quota: quantity '1GB' is not a Kubernetes quantity; "
        "write 1G (1 x 10^9 bytes)",
    }


def test_the_same_name_twice_is_a_problem(tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(dataset() + "---\n" + process("gen"))
    two.write_text(process("gen", function="fluid_core.demo.pipeline:train"))
    result = fluidv("validate", str(one), str(two), home=str(tmp_path / "home"))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for source in (f"{one}:6", f"{two}:1"):
        assert (f"invalid DataProcess/gen ({source}): metadata.name: DataProcess/gen is given 2 times in this "
                "flow; give each a name of its own") in lines


def test_probing_an_export_target_leaves_nothing_behind(tmp_path):
    target = tmp_path / "exports" / "deeper"
    flow = tmp_path / "flow.yaml"
    flow.write_text(dataset() + "---\n" + f"{HEAD}kind: DataMigrate\nmetadata: {{name: out}}\nspec:\n"
                    f"  from: {{dataset: {{name: d}}}}\n  to: {{externalStorage: {{uri: 'file://{target}'}}}}\n")
    result = fluidv("validate", str(flow), home=str(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "exports").exists()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    flow.write_text(flow.read_text().replace(str(target), str(locked / "x")))
    refused = fluidv("validate", str(flow), home=str(tmp_path / "home"))
    if os.geteuid() != 0:  # root writes anywhere
        assert refused.returncode == 1 and "spec.to.externalStorage.uri" in refused.stderr
    assert list(locked.iterdir()) == []


def test_kubernetes_mode_checks_what_holds_anywhere(tmp_path):
    """With --mode kubernetes a Job's podSpec is fine, this machine's paths are not looked
    at, and what the files do not hold may exist in the cluster: said, not refused."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"{HEAD}kind: DataProcess\nmetadata: {{name: job}}\nspec:\n  dataset: {{name: elsewhere}}\n"
                    "  processor: {job: {podSpec: {containers: [{name: c, image: busybox}]}}}\n---\n"
                    f"{HEAD}kind: DataLoad\nmetadata: {{name: load}}\nspec:\n  dataset: {{name: elsewhere}}\n"
                    f"  runAfter: {{kind: DataProcess, name: job}}\n  target: [{{path: /not/on/this/machine.csv}}]\n")
    local = fluidv("validate", str(flow), home=str(tmp_path / "home"))
    assert local.returncode == 1 and "a Job's podSpec runs on Kubernetes only" in local.stderr
    kube = fluidv("validate", "--mode", "kubernetes", str(flow), home=str(tmp_path / "home"))
    assert kube.returncode == 0, kube.stderr
    assert kube.stdout.splitlines() == [f"ok      DataProcess/job ({flow}:1)", f"ok      DataLoad/load ({flow}:8)"]
    assert (f"note    DataProcess/job ({flow}:1): spec.dataset.name: no Dataset default/elsewhere in these files: "
            "it must exist in the cluster; not checked here") in kube.stderr.splitlines()
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(dataset() + "---\n" + process("a", after="b") + "---\n" + process("b", after="a"))
    looped = fluidv("validate", "--mode", "kubernetes", str(cycle), home=str(tmp_path / "home"))
    assert looped.returncode == 1 and "cycle DataProcess/" in looped.stderr
