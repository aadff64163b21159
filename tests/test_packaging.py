"""What installing truthsteer brings: no test tools at run time, and a wheel holding only what runs
(the package data read through importlib.resources, no labelling provenance)."""

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "dictionaries", "evals", "reports")
PROVENANCE = ("answers.jsonl", "labels_pass1.jsonl", "labels_pass2.jsonl",
              "labels_resolved.jsonl", "make_dataset.py", "make_longform.py", "README.md",
              "split.json", "agreement.json")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_pyproject__pytest_is_a_test_extra_not_a_runtime_dependency():
    project = _pyproject()["project"]
    names = [d.split(">")[0].split("=")[0].split("[")[0].strip().lower()
             for d in project["dependencies"]]
    assert "pytest" not in names
    assert any(d.startswith("pytest") for d in project["optional-dependencies"]["test"])


def test_packages__no_runtime_module_imports_pytest():
    bad = []
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                bad += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0]
                        == "pytest"]
    assert not bad, bad


def test_package_file__finds_the_shipped_data():
    from evals.io import package_file
    from evals.judges.steered import packaged_steered_files

    assert package_file("reference_text.txt").is_file()
    assert package_file("judges/nonanswer.json").is_file()
    assert packaged_steered_files() is not None


@pytest.mark.slow
def test_wheel__ships_what_runs_and_no_labelling_provenance(tmp_path):
    """Built from a clean copy of the sources (a checkout's build/ or egg-info could leak into
    the wheel, and would hide what a fresh clone ships)."""
    src = tmp_path / "src"
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("truthsteer-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "evals/steered_dev/steered_truth.jsonl" in names
    assert "evals/steered_dev/steered_info.jsonl" in names
    assert "evals/reference_text.txt" in names and "evals/judges/nonanswer.json" in names
    assert "evals/longform_dev/longform_truth.jsonl" in names
    assert not [n for n in names if n.startswith(("evals/steered_dev/", "evals/longform_dev/"))
                and (n.rsplit("/", 1)[-1] in PROVENANCE or "/briefs/" in n)]
    assert [n for n in names if n.startswith("evals/judges/shipped/quick-")]
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "docs")]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist: pytest")]
    assert requires and all("extra ==" in line for line in requires)
