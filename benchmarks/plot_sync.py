"""Draw bench_sync's results and write their tables into benchmarks/README.md.

    benchmarks/.peers/bin/python benchmarks/plot_sync.py benchmarks/results/sync-*.json

Needs only matplotlib (installed in ``benchmarks/.peers/`` by ``setup_peers.sh``; the
project's venv does not have it). Writes ``benchmarks/sync.png`` and replaces what lies
between the ``sync:begin``/``sync:end`` markers of the README's ``## Sync`` section (created
if missing); the text outside the markers is left alone. A scenario run several times is
shown by its median wall and CPU time; a mirror is correct when every run left it so.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE: Final = Path(__file__).resolve().parent
SCENARIOS: Final = ("upload", "noop", "mutated", "samesize", "delete", "download", "noop-10x")
GOAL_SCENARIOS: Final = ("upload", "download", "noop", "mutated", "samesize", "delete")
OURS: Final = ("ours", "ours-obstore")
TOOLS: Final = ("ours", "ours-obstore", "s5cmd", "aws", "rclone-tuned", "rclone", "fsspec")
LABELS: Final = {
    "ours": "gens-fs sync",
    "ours-obstore": "gens-fs sync --engine obstore",
    "aws": "aws s3 sync",
    "rclone": "rclone (defaults)",
    "rclone-tuned": "rclone tuned",
    "s5cmd": "s5cmd",
    "fsspec": "fsspec rsync",
}
COLORS: Final = {
    "ours": "#d62728",
    "ours-obstore": "#8c564b",
    "aws": "#ff7f0e",
    "rclone": "#1f77b4",
    "rclone-tuned": "#17becf",
    "s5cmd": "#2ca02c",
    "fsspec": "#9467bd",
}
BEGIN: Final = "<!-- sync:begin (written by plot_sync.py) -->"
END: Final = "<!-- sync:end -->"

Run = dict[str, Any]
Key = tuple[float, str, str]  # latency ms, tool, scenario


def load(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], dict[Key, list[Run]]]:
    """The files' headers, and every run grouped by (latency ms, tool, scenario), repeats in
    order; a later file's runs replace an earlier one's for the same key."""
    metas: list[dict[str, Any]] = []
    runs: dict[Key, list[Run]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        metas.append({**{k: v for k, v in data.items() if k != "runs"}, "path": path.name})
        mine: dict[Key, list[Run]] = {}
        for run in data["runs"]:
            mine.setdefault((run["latency_ms"], run["tool"], run["scenario"]), []).append(run)
        runs.update(mine)
    return metas, runs


def latencies(runs: dict[Key, list[Run]]) -> list[float]:
    return sorted({lat for lat, _, _ in runs})


def tools(runs: dict[Key, list[Run]]) -> list[str]:
    present = {tool for _, tool, _ in runs}
    return [t for t in TOOLS if t in present]


def median(group: list[Run] | None, metric: str) -> float | None:
    values = [r[metric] for r in group or [] if r.get(metric) is not None]
    return statistics.median(values) if values else None


def correct(group: list[Run]) -> bool:
    return all(r["correct"] for r in group if not r.get("skipped"))


def plot(runs: dict[Key, list[Run]], out: Path) -> None:
    lats, names = latencies(runs), tools(runs)
    fig, axes = plt.subplots(2, len(lats), figsize=(6.5 * len(lats), 7.5), squeeze=False)
    width = 0.8 / len(names)
    for col, lat in enumerate(lats):
        for row, (metric, label) in enumerate((("wall_s", "wall s"), ("cpu_s", "client CPU s"))):
            ax = axes[row][col]
            for i, tool in enumerate(names):
                xs, ys, marks = [], [], []
                for j, scenario in enumerate(SCENARIOS):
                    group = runs.get((lat, tool, scenario))
                    value = median(group, metric)
                    if group is None or value is None:
                        continue
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(max(value, 1e-3))
                    marks.append("" if correct(group) else "x")
                ax.bar(xs, ys, width, color=COLORS[tool], label=LABELS[tool])
                for x, y, mark in zip(xs, ys, marks, strict=True):
                    if mark:
                        ax.text(x, y * 1.08, mark, ha="center", va="bottom", fontsize=8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(SCENARIOS)), SCENARIOS, fontsize=8)
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.set_ylabel(label)
            ax.set_title(f"{label} at +{lat:g} ms/request (median of the runs)", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
    fig.suptitle(
        "Syncing a synthetic store with S3 (moto behind latency middleware)\n"
        "log scale; x = a wrong mirror at the end of a run",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out, dpi=110)


def _requests(requests: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(requests.items())) or "-"


def _ratio(value: float | None, other: float | None) -> str:
    return "-" if value is None or not other else f"{value / other:.2f}"


def _mirror(group: list[Run]) -> str:
    if any(r.get("skipped") for r in group):
        return f"skipped ({group[0]['skipped']})"
    if any(r["timeout"] for r in group):
        return "**timeout**"
    wrong = [r for r in group if not r["correct"]]
    if not wrong:
        return "yes"
    return f"**no** ({len(wrong)} of {len(group)} runs): {wrong[0]['mismatch']}"


def _row(runs: dict[Key, list[Run]], lat: float, tool: str, scenario: str) -> str | None:
    group = runs.get((lat, tool, scenario))
    if group is None:
        return None
    wall, cpu = median(group, "wall_s"), median(group, "cpu_s")
    server = median(group, "server_cpu_s")
    s5cmd, aws = runs.get((lat, "s5cmd", scenario)), runs.get((lat, "aws", scenario))
    name = f"**{LABELS[tool]}**" if tool in OURS else LABELS[tool]
    return (
        f"| {scenario} | {name} | {len(group)} | {_requests(group[0]['requests'])} | "
        f"{_seconds(wall)} | {_ratio(wall, median(s5cmd, 'wall_s'))} | "
        f"{_ratio(wall, median(aws, 'wall_s'))} | {_seconds(cpu)} | "
        f"{_ratio(cpu, median(s5cmd, 'cpu_s'))} | {_seconds(server)} | {_mirror(group)} |"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(runs: dict[Key, list[Run]]) -> list[str]:
    lines: list[str] = []
    for lat in latencies(runs):
        groups = [g for (la, _, _), g in runs.items() if la == lat]
        loads = [r["load_before"] for g in groups for r in g if r.get("load_before") is not None]
        lines += [
            f"#### +{lat:g} ms per request",
            "",
            f"1-minute load average before the runs: {min(loads):.1f} to {max(loads):.1f} on "
            "2 cores (the last minute's work: the runs before, other work if any)."
            if loads
            else "",
            "",
            "| scenario | tool | runs | requests (first run) | wall s (median) | wall / s5cmd "
            "| wall / aws | client CPU s (median) | CPU / s5cmd | server CPU s (median) "
            "| correct mirror |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for scenario in SCENARIOS:
            lines += [r for tool in tools(runs) if (r := _row(runs, lat, tool, scenario))]
        lines += _cold_runs(runs, lat)
        lines.append("")
    return lines


def _cold_runs(runs: dict[Key, list[Run]], lat: float) -> list[str]:
    """The first no-op of each gens-fs engine: a cold hash cache (every file hashed). The
    10x store's folder and caches are kept from one latency to the next: cold only at the
    first."""
    notes = []
    for tool in OURS:
        for scenario in ("noop", "noop-10x") if lat == min(latencies(runs)) else ("noop",):
            group = runs.get((lat, tool, scenario))
            if group and len(group) > 1 and group[0]["wall_s"] is not None:
                notes.append(
                    f"{LABELS[tool]} {scenario}, first run (cold hash cache): "
                    f"{group[0]['wall_s']:.2f} s wall, {group[0]['cpu_s']:.2f} s CPU"
                )
    return ["", "; ".join(notes) + "."] if notes else []


def _minimum(run: Run) -> tuple[dict[str, int], int]:
    """The fewest requests a scenario needs besides LIST, and the LIST pages of one listing
    of the prefix whole (an empty one for an upload; what is left for a download)."""
    scenario, files = run["scenario"], run["must_copy"]
    wanted = {"upload": "PUT", "mutated": "PUT", "samesize": "PUT", "download": "GET"}
    need = {wanted[scenario]: files} if scenario in wanted and files else {}
    if scenario == "delete":
        need = {"DELETE_MULTI": -(-run["must_delete"] // 1000)}
    pages: dict[str, int] = {"upload": 1, "download": max(1, -(-files // 1000))}
    return need, pages.get(scenario, int(run["list_pages"]))


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def server_floor(runs: dict[Key, list[Run]], lat: float, scenario: str) -> float | None:
    """The least CPU the S3 server spent on one tool's run of ``scenario`` (median of each
    tool's runs). The server answers on one core at a time (moto is Python, under one
    GIL), so a run's wall time is at least its own server CPU, however fast its client;
    and no tool here needed less than this for the scenario's requests."""
    spent = [
        median(g, "server_cpu_s") for (la, _, s), g in runs.items() if (la, s) == (lat, scenario)
    ]
    known = [v for v in spent if v is not None]
    return min(known) if known else None


def _wall_goal(runs: dict[Key, list[Run]], lat: float, tool: str) -> str:
    """At most 0.9x s5cmd's wall time and at most 0.5x aws's, scenario by scenario; a
    target below the server's floor (:func:`server_floor`) is said to be."""
    parts, oks = [], []
    for scenario in GOAL_SCENARIOS:
        mine = median(runs.get((lat, tool, scenario)), "wall_s")
        s5cmd = median(runs.get((lat, "s5cmd", scenario)), "wall_s")
        aws = median(runs.get((lat, "aws", scenario)), "wall_s")
        if mine is None or s5cmd is None or aws is None:
            continue
        target = min(0.9 * s5cmd, 0.5 * aws)
        ok = mine <= target
        oks.append(ok)
        floor = server_floor(runs, lat, scenario)
        mark = "" if ok else " (**over**)"
        if not ok and floor is not None and target < floor:
            mark = f" (**over**; the target, {target:.2f} s, is below the server's {floor:.2f} s)"
        parts.append(f"{scenario} {mine / s5cmd:.2f}x s5cmd, {mine / aws:.2f}x aws{mark}")
    return f"{_verdict(bool(oks) and all(oks))} ({sum(oks)} of {len(oks)}): " + "; ".join(parts)


def _requests_goal(runs: dict[Key, list[Run]], lat: float, tool: str) -> str:
    parts, oks = [], []
    for scenario in (*GOAL_SCENARIOS, "noop-10x"):
        group = runs.get((lat, tool, scenario))
        if not group or group[0]["wall_s"] is None:
            continue
        found = dict(group[0]["requests"])
        lists = found.pop("LIST", 0)
        need, pages = _minimum(group[0])
        ok = found == need and lists <= pages
        oks.append(ok)
        parts.append(
            f"{scenario} {_requests(group[0]['requests'])}"
            + ("" if ok else f" (minimum {_requests({**need, 'LIST': pages})})")
        )
    return f"{_verdict(bool(oks) and all(oks))} ({sum(oks)} of {len(oks)}): " + "; ".join(parts)


def _cpu_goal(runs: dict[Key, list[Run]], lat: float, tool: str) -> str:
    parts, oks = [], []
    for scenario in ("noop", "mutated", "samesize", "noop-10x"):
        mine = median(runs.get((lat, tool, scenario)), "cpu_s")
        theirs = median(runs.get((lat, "s5cmd", scenario)), "cpu_s")
        if mine is None or theirs is None:
            continue
        oks.append(mine <= theirs)
        parts.append(f"{scenario} {mine:.2f} s vs {theirs:.2f} s")
    return f"{_verdict(bool(oks) and all(oks))} ({sum(oks)} of {len(oks)}): " + "; ".join(parts)


def targets(runs: dict[Key, list[Run]]) -> list[str]:
    """The issue's goal, checked against the figures (met / not met, with the numbers)."""
    lines = ["#### The goal, checked against these figures", ""]
    for tool in (t for t in OURS if t in tools(runs)):
        lines += [f"**{LABELS[tool]}**", ""]
        for lat in latencies(runs):
            lines += [
                f"- +{lat:g} ms, wall time at most 0.9x s5cmd's and 0.5x aws's: "
                + _wall_goal(runs, lat, tool),
                f"- +{lat:g} ms, the minimum requests (LIST: one listing of the prefix "
                "whole): " + _requests_goal(runs, lat, tool),
                f"- +{lat:g} ms, client CPU no more than s5cmd's on no-op and edits: "
                + _cpu_goal(runs, lat, tool),
            ]
        edits = [g for (_, t, s), g in runs.items() if t == tool and s in ("mutated", "samesize")]
        caught = bool(edits) and all(correct(g) for g in edits)
        missed = sorted(
            {
                LABELS[t]
                for (_, t, s), g in runs.items()
                if s in ("mutated", "samesize") and not correct(g)
            }
        )
        lines += [
            f"- Every edit caught (same-size edits with their old mtime too): {_verdict(caught)} "
            f"(tools that left a wrong mirror after an edit: {', '.join(missed) or 'none'})",
            "",
        ]
    return lines


def section(metas: list[dict[str, Any]], runs: dict[Key, list[Run]]) -> str:
    lines = [BEGIN, ""]
    for meta in metas:
        store, big = meta["store"], meta.get("big_store")
        sizes = f"{store['drafts']} drafts, {store['files']:,} files, {store['bytes'] / 1e6:.1f} MB"
        if big:
            sizes += f"; noop-10x: {big['drafts']} drafts, {big['files']:,} files"
        lines.append(
            f"- `{meta['command']}` ({meta['date']}, {meta['machine']}): {sizes} "
            f"-> `results/{meta['path']}`"
        )
    versions = metas[-1]["versions"]
    lines += ["- versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()), ""]
    lines += ["![sync benchmark](sync.png)", ""]
    lines += targets(runs)
    lines += table(runs)
    lines.append(END)
    return "\n".join(lines)


def write_readme(readme: Path, body: str) -> None:
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text, flags=re.DOTALL
        )
    elif "## Sync" in text:
        text = text.replace("## Sync\n", f"## Sync\n\n{body}\n", 1)
    else:
        text = text.rstrip("\n") + f"\n\n## Sync\n\n{body}\n"
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, nargs="+", help="bench_sync JSON files")
    parser.add_argument("--png", type=Path, default=HERE / "sync.png")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    args = parser.parse_args()
    metas, runs = load(args.results)
    plot(runs, args.png)
    write_readme(args.readme, section(metas, runs))
    print(f"wrote {args.png} and {args.readme}")


if __name__ == "__main__":
    main()
