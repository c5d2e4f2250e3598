"""How much code a pipeline is: lines of each pipeline module and of its wiring, before and after recipes.

"Wiring" is what a reader must read to learn the pipeline's steps: today the
``recipe()`` function and the ``*_step``/``*_steps`` helpers it calls; before the
recipe core (the baseline commit, read from git in the same run) the ``build()``
function and the private helpers it called to wire steps, plus the lines the CLI
spent on the pipeline. Usage: ``python bench/bench_recipe_size.py [--baseline COMMIT]``.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ("pairs", "interleaved", "captions", "text")
BASELINE = "fbeb046"  # the last commit before the recipe core
OLD_WIRING = {  # functions that wired the steps by hand before the recipe core
    "pairs": ("build", "_score_and_filter_clip", "DownloadPairs"),
    "interleaved": ("build", "_page_steps", "_write_outputs", "_write_stage", "stages_written", "check_stages", "run"),
    "captions": ("build", "_clip_margin", "run"),
    "text": ("build", "run"),
}


def _source(path: str, commit: str | None) -> str:
    if commit is None:
        return (ROOT / path).read_text()
    return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def _lines_of(source: str, names) -> int:
    tree = ast.parse(source)
    total = 0
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and names(node.name):
            total += node.end_lineno - node.lineno + 1
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and names(t.id) for t in node.targets):
            total += node.end_lineno - node.lineno + 1
    return total


def _cli_lines(source: str, name: str) -> int:
    """Lines of the CLI that mention the pipeline by name or its config."""
    return sum(1 for line in source.splitlines() if f'"{name}"' in line or f"{name}_config" in line
               or f"pipelines import {name}" in line)


def measure(baseline: str) -> list[tuple[str, int, int, int, int]]:
    rows = []
    old_cli = _source("pipelines/cli.py", baseline)
    for name in PIPELINES:
        path = f"pipelines/{name}.py"
        old, new = _source(path, baseline), _source(path, None)
        old_wiring = _lines_of(old, lambda n: n in OLD_WIRING[name]) + _cli_lines(old_cli, name)
        new_wiring = _lines_of(new, lambda n: n in ("recipe", "COMMAND") or n.endswith(("_step", "_steps")))
        rows.append((name, len(old.splitlines()), len(new.splitlines()), old_wiring, new_wiring))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    args = parser.parse_args()
    shared = sum(len(_source(f"pipelines/{m}.py", None).splitlines()) for m in ("recipe", "executor", "stages", "registry"))
    print("| pipeline | module lines, baseline | module lines, now | wiring lines, baseline (build + CLI) | declaration lines, now (recipe + COMMAND) |")
    print("|---|---:|---:|---:|---:|")
    for name, old, new, old_wiring, new_wiring in measure(args.baseline):
        print(f"| {name} | {old} | {new} | {old_wiring} | {new_wiring} |")
    print(f"\nshared once for every pipeline: recipe.py + executor.py + stages.py + registry.py = {shared} lines")


if __name__ == "__main__":
    main()
