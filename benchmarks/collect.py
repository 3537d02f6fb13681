"""Assemble BENCHMARKS.md from the per-topic reports in benchmarks/*.md.

Each topic's script writes/updates its own benchmarks/<topic>.md (command, machine, figures);
this only concatenates them in a fixed order under one table of contents.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "clip_reading", "wild_reading", "training_cache", "index_scale", "synth", "real_world", "objective", "train_step",
    "pretrain_learning", "methods", "instance_sync", "cma_precision", "cma_topk", "downstream", "localization",
    "localization_protocols", "extract", "extract_speed", "search", "agreement",
    "gpu",
]

HEADER = """# Benchmarks

Every figure the project claims, with the command that produced it and the machine it ran on.
Speed figures are ratios against a baseline measured side by side in the same script. The CPU
machine is the 2-core / 24 GiB development box (shared with other jobs while measuring: single
figures are noisy, ratios within one run are what count); GPU figures come from a lent H100.
Regenerate this file with `python benchmarks/collect.py` after re-running a topic's script.

"""


def _demote(lines):
    """Markdown headings one level down; lines inside fenced code blocks (shell comments) stay as they are."""
    fenced = False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        yield "#" + line if line.startswith("#") and not fenced else line


def main() -> None:
    topics = [t for t in ORDER if (HERE / f"{t}.md").exists()]
    topics += sorted(p.stem for p in HERE.glob("*.md") if p.stem not in ORDER)
    parts = [HEADER, "## Contents\n"]
    parts += [f"- [{t}](#{t.replace('_', '-')}) — `benchmarks/{t}.md`" for t in topics]
    parts.append("")
    for t in topics:
        body = (HERE / f"{t}.md").read_text().strip()
        # demote the topic file's headings by one level so the document keeps one title
        body = "\n".join(_demote(body.splitlines()))
        parts += [f'<a id="{t.replace("_", "-")}"></a>\n', body, ""]
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(parts) + "\n")
    print(f"wrote BENCHMARKS.md from {len(topics)} topic file(s)")


if __name__ == "__main__":
    main()
