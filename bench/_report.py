"""Figures of the herd benchmark: the lower bound, the markdown table and the completion plot.

The bound for F bytes to N Pis is ``max(F/U, F/d, N·F/(U + N·u))``: the uplink must carry the
object once, every Pi must receive it over its own link, and all N copies must leave some
sender, the uplink or a Pi's upload port (the seeder's included). Rates nobody configured
(loopback Pi links) drop their term; with no rate at all the bound is ``None``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench._testbed import Rates

# Debian's python3-matplotlib lives with the system interpreter; when the venv lacks
# matplotlib the plot is drawn by that interpreter (this module needs nothing else).
SYSTEM_PYTHON = "/usr/bin/python3"


def lower_bound(size: int, nodes: int, rates: Rates, *, warm: bool = False) -> float | None:
    """The bound above; ``warm``: one Pi already holds the object, so the uplink carries
    nothing and N-1 copies must leave the Pis' upload ports: ``max(F/d, (N-1)·F/(N·u))``."""
    terms: list[float] = []
    if rates.down:
        terms.append(size / rates.down)
    if warm:
        if rates.up:
            terms.append((nodes - 1) * size / (nodes * rates.up))
        return max(terms) if terms else None
    if rates.uplink:
        terms.append(size / rates.uplink)
    if rates.up and rates.uplink:
        terms.append(nodes * size / (rates.uplink + nodes * rates.up))
    return max(terms) if terms else None


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU model, RAM."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "ram_gib": ram_gib,
        "kernel": platform.release(),
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


COLUMNS = (
    ("scenario", "scenario", 0),
    ("system", "system", 0),
    ("nodes", "N", 0),
    ("size_mib", "F MiB", 1),
    ("completed", "done", 0),
    ("uplink_ratio", "uplink ratio", 2),
    ("t_last_s", "t_last s", 1),
    ("t_bound_s", "bound s", 1),
    ("bound_ratio", "t/bound", 2),
    ("verified", "verified", 0),
    ("max_rss_mb", "max RSS MiB", 0),
    ("cpu_s_per_gb", "CPU s/GB", 1),
    ("failover_s", "failover s", 1),
)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        if row.get("runnable") is False:
            cells = [_fmt(row.get("scenario")), _fmt(row.get("system"))]
            cells += ["not runnable: " + str(row.get("reason", ""))]
            cells += [""] * (len(COLUMNS) - 3)
        else:
            view = {**row, "size_mib": row["bytes"] / (1 << 20) if row.get("bytes") else None}
            if view.get("completed") is not None:
                view["completed"] = f"{row['completed']}/{row.get('live_nodes', row['nodes'])}"
            cells = [_fmt(view.get(key), digits) for key, _, digits in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {row['scenario']}/{row['system']}: {note}"
        for row in rows
        for note in row.get("notes", [])
    ]
    for row in rows:
        errors = row.get("errors") or {}
        if errors:
            pi, text = next(iter(errors.items()))
            first = " ".join(text.split())[:160]
            notes.append(
                f"- {row['scenario']}/{row['system']}: {len(errors)} Pi(s) failed, "
                f"e.g. {pi}: {first}"
            )
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def plot(rows: list[dict[str, Any]], scenario: str, path: Path, title: str) -> str:
    """Plot each Pi's completion over time, one line per system; returns what happened."""
    try:
        # Imported by name: matplotlib is optional and has no stubs here.
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        return _plot_elsewhere(rows, scenario, path, title)
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    ticker: Any = importlib.import_module("matplotlib.ticker")

    fig, ax = plt.subplots(figsize=(7, 4))
    bound = None
    for row in rows:
        if row.get("scenario") != scenario or not row.get("times_s"):
            continue
        times = sorted(t for t in row["times_s"] if t is not None)
        xs = [0.0]
        ys = [0]
        for k, t in enumerate(times, 1):
            xs += [t, t]
            ys += [k - 1, k]
        ax.plot(xs, ys, label=row["system"], drawstyle="default")
        bound = row.get("t_bound_s") or bound
    if bound:
        ax.axvline(bound, linestyle="--", color="grey", label=f"bound {bound:.1f} s")
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("seconds since t=0")
    ax.set_ylabel("Pis with a verified copy")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot: {path}"


def _plot_elsewhere(rows: list[dict[str, Any]], scenario: str, path: Path, title: str) -> str:
    missing = "no plot: matplotlib is not importable (Debian: apt-get install python3-matplotlib)"
    if sys.executable == SYSTEM_PYTHON or not Path(SYSTEM_PYTHON).exists():
        return missing
    data = path.with_suffix(".json")
    data.write_text(json.dumps({"rows": rows, "scenario": scenario, "title": title}))
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-m", "bench._report", str(data), str(path)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        data.unlink(missing_ok=True)
    if done.returncode != 0:
        return missing if "matplotlib" in done.stderr else f"no plot: {done.stderr[-300:]}"
    return done.stdout.strip()


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(plot(spec["rows"], spec["scenario"], Path(sys.argv[2]), spec["title"]))
