"""Draw bench_sync's results and write their table into benchmarks/README.md.

    benchmarks/.peers/bin/python benchmarks/plot_sync.py benchmarks/results/sync-*.json

Needs only matplotlib (installed in ``benchmarks/.peers/`` by ``setup_peers.sh``; the
project's venv does not have it). Writes ``benchmarks/sync.png`` and replaces what lies
between the ``sync:begin``/``sync:end`` markers of the README's ``## Sync`` section (created
if missing); the text outside the markers is left alone.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE: Final = Path(__file__).resolve().parent
SCENARIOS: Final = ("upload", "noop", "mutated", "download")
TOOLS: Final = ("ours", "aws", "rclone", "rclone-tuned", "s5cmd", "fsspec")
LABELS: Final = {
    "ours": "gens-fs sync",
    "aws": "aws s3 sync",
    "rclone": "rclone",
    "rclone-tuned": "rclone tuned",
    "s5cmd": "s5cmd",
    "fsspec": "fsspec rsync",
}
COLORS: Final = {
    "ours": "#d62728",
    "aws": "#ff7f0e",
    "rclone": "#1f77b4",
    "rclone-tuned": "#17becf",
    "s5cmd": "#2ca02c",
    "fsspec": "#9467bd",
}
BEGIN: Final = "<!-- sync:begin (written by plot_sync.py) -->"
END: Final = "<!-- sync:end -->"

Run = dict[str, Any]


def load(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], dict[tuple[float, str, str], Run]]:
    """The files' headers, and every run keyed by (latency ms, tool, scenario); later wins."""
    metas: list[dict[str, Any]] = []
    runs: dict[tuple[float, str, str], Run] = {}
    for path in paths:
        data = json.loads(path.read_text())
        metas.append({**{k: v for k, v in data.items() if k != "runs"}, "path": path.name})
        for run in data["runs"]:
            runs[(run["latency_ms"], run["tool"], run["scenario"])] = run
    return metas, runs


def latencies(runs: dict[tuple[float, str, str], Run]) -> list[float]:
    return sorted({lat for lat, _, _ in runs})


def tools(runs: dict[tuple[float, str, str], Run]) -> list[str]:
    present = {tool for _, tool, _ in runs}
    return [t for t in TOOLS if t in present]


def plot(runs: dict[tuple[float, str, str], Run], out: Path) -> None:
    lats, names = latencies(runs), tools(runs)
    fig, axes = plt.subplots(2, len(lats), figsize=(5.2 * len(lats), 7.5), squeeze=False)
    width = 0.8 / len(names)
    for col, lat in enumerate(lats):
        drafts = {r["drafts"] for (la, _, _), r in runs.items() if la == lat}
        for row, (metric, label) in enumerate((("wall_s", "wall s"), ("cpu_s", "client CPU s"))):
            ax = axes[row][col]
            for i, tool in enumerate(names):
                xs, ys, marks = [], [], []
                for j, scenario in enumerate(SCENARIOS):
                    run = runs.get((lat, tool, scenario))
                    if run is None or run.get(metric) is None:
                        continue
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(max(run[metric], 1e-3))
                    marks.append("T" if run["timeout"] else ("" if run["correct"] else "x"))
                ax.bar(xs, ys, width, color=COLORS[tool], label=LABELS[tool])
                for x, y, mark in zip(xs, ys, marks, strict=True):
                    if mark:
                        ax.text(x, y * 1.08, mark, ha="center", va="bottom", fontsize=8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(SCENARIOS)), SCENARIOS)
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.set_ylabel(label)
            size = ", ".join(f"{d} drafts" for d in sorted(drafts))
            ax.set_title(f"{label} at +{lat:g} ms/request ({size})", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), fontsize=9)
    fig.suptitle(
        "Syncing a synthetic store with S3 (moto behind latency middleware)\n"
        "log scale; x = wrong mirror at the end, T = timed out",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=110)


def _ratio(value: float | None, ours: float | None) -> str:
    if value is None or not ours:
        return "-"
    return f"{value / ours:.2f}"


def _requests(requests: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(requests.items())) or "-"


def _mirror(run: Run) -> str:
    if run.get("skipped"):
        return f"skipped ({run['skipped']})"
    if run["timeout"]:
        return "**timeout**"
    if run["correct"]:
        return "yes" if run["returncode"] == 0 else f"yes (exit {run['returncode']})"
    return f"**no**: {run['mismatch']}"


def table(runs: dict[tuple[float, str, str], Run]) -> list[str]:
    lines: list[str] = []
    for lat in latencies(runs):
        sample = next(r for (la, _, _), r in runs.items() if la == lat)
        loads = [
            r["load_before"]
            for (la, _, _), r in runs.items()
            if la == lat and r.get("load_before") is not None
        ]
        load = (
            f" (1-minute load average before the runs: {min(loads):.1f} to {max(loads):.1f}"
            " on 2 cores: other work shared the machine)"
            if loads
            else ""
        )
        lines += [
            f"#### +{lat:g} ms per request — {sample['drafts']} drafts, {sample['files']} files",
            "",
            *([load.strip(), ""] if load else []),
            "| scenario | tool | requests | wall s | wall / ours | client CPU s "
            "| CPU / ours | correct mirror |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for scenario in SCENARIOS:
            ours = runs.get((lat, "ours", scenario))
            for tool in tools(runs):
                run = runs.get((lat, tool, scenario))
                if run is None:
                    continue
                wall = run["wall_s"]
                cpu = run["cpu_s"]
                name = f"**{LABELS[tool]}**" if tool == "ours" else LABELS[tool]
                lines.append(
                    f"| {scenario} | {name} | {_requests(run['requests'])} | "
                    f"{'-' if wall is None else f'{wall:.2f}'} | "
                    f"{_ratio(wall, ours and ours['wall_s'])} | "
                    f"{'-' if cpu is None else f'{cpu:.2f}'} | "
                    f"{_ratio(cpu, ours and ours['cpu_s'])} | {_mirror(run)} |"
                )
        lines.append("")
    return lines


def _minimal(run: Run) -> tuple[bool, str]:
    """Whether ``run`` made the minimum requests for its scenario, and what it made."""
    req = dict(run["requests"])
    lists = req.pop("LIST", 0)
    want = {"upload": "PUT", "mutated": "PUT", "download": "GET", "noop": None}[run["scenario"]]
    expected = {want: run["must_copy"]} if want else {}
    ok = req == expected and lists <= run["list_pages"] + 1
    got = _requests(run["requests"])
    return ok, f"{got} (minimum: {_requests(expected)} + {run['list_pages']} LIST pages)"


def targets(runs: dict[tuple[float, str, str], Run]) -> list[str]:
    """The issue's targets, checked against the figures (met / not met, with the numbers)."""
    lines = ["#### Targets, checked against these figures", ""]
    lats = latencies(runs)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    misses = []
    for lat in lats:
        for scenario in SCENARIOS:
            run = runs.get((lat, "ours", scenario))
            if run and run["wall_s"] is not None:
                ok, text = _minimal(run)
                if not ok:
                    misses.append(f"+{lat:g} ms {scenario}: {text}")
    lines.append(
        f"- Minimum requests in every scenario (one PUT per file to copy, LIST pages only for "
        f"a no-op; one spare LIST allowed for listing `cohorts/` apart from `gens/`): "
        f"{verdict(not misses)}" + ("" if not misses else ": " + "; ".join(misses))
    )
    cpu_misses, cpu_all = [], []
    for lat in lats:
        for scenario in SCENARIOS:
            ours, aws = runs.get((lat, "ours", scenario)), runs.get((lat, "aws", scenario))
            if ours and aws and ours["cpu_s"] is not None and aws["cpu_s"] is not None:
                cpu_all.append(ours["cpu_s"] <= aws["cpu_s"])
                if ours["cpu_s"] > aws["cpu_s"]:
                    cpu_misses.append(
                        f"+{lat:g} ms {scenario} {ours['cpu_s']:.2f} s vs {aws['cpu_s']:.2f} s"
                    )
    lines.append(
        f"- Client CPU no more than `aws s3 sync`'s: {verdict(not cpu_misses)} "
        f"({sum(cpu_all)} of {len(cpu_all)} runs)"
        + ("" if not cpu_misses else "; over in: " + ", ".join(cpu_misses))
    )
    slow = max(lats)
    for peer, factor, what in (
        ("aws", 2.0, "at least 2x faster than"),
        ("rclone-tuned", 1.0, "no slower than"),
        ("s5cmd", 1.0, "(the one to catch) no slower than"),
    ):
        parts, oks = [], []
        for scenario in SCENARIOS:
            ours, other = runs.get((slow, "ours", scenario)), runs.get((slow, peer, scenario))
            if not (ours and other) or ours["wall_s"] is None or other["wall_s"] is None:
                continue
            ratio = other["wall_s"] / ours["wall_s"]
            oks.append(ratio >= factor)
            parts.append(f"{scenario} {ratio:.2f}x")
        lines.append(
            f"- At +{slow:g} ms, {what} {LABELS[peer]} (their wall / ours): "
            f"{verdict(bool(oks) and all(oks))} ({', '.join(parts)})"
        )
    caught = [
        r["correct"]
        for (lat, tool, sc), r in runs.items()
        if tool == "ours" and sc == "mutated" and r["wall_s"] is not None
    ]
    missed = sorted(
        {
            LABELS[tool]
            for (lat, tool, sc), r in runs.items()
            if sc == "mutated" and r["wall_s"] is not None and not r["correct"]
        }
    )
    lines.append(
        f"- Same-size edits caught: {verdict(bool(caught) and all(caught))} "
        f"(tools that ended the `mutated` resync with a wrong mirror: "
        f"{', '.join(missed) or 'none'})"
    )
    lines.append("")
    return lines


def section(metas: list[dict[str, Any]], runs: dict[tuple[float, str, str], Run]) -> str:
    lines = [BEGIN, ""]
    for meta in metas:
        store = meta["store"]
        lines.append(
            f"- `{meta['command']}` ({meta['date']}, {meta['machine']}): {store['drafts']} "
            f"drafts, {store['generations']} generations, {store['files']} files, "
            f"{store['bytes'] / 1e6:.1f} MB -> `results/{meta['path']}`"
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
