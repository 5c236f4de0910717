"""The simulator's tables: validation (simulated vs measured) and projection, as markdown."""

from __future__ import annotations

from typing import Any

from bench._report import _fmt as _cell  # the herd table's cell format

MiB = 1 << 20


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def validation_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ["case", "budget", "bound s", "measured last Pi s (runs)", "sim last Pi s", "error %",
            "measured ÷ bound", "sim ÷ bound", "measured uplink B", "sim uplink B", "uplink same",
            "role"]  # fmt: skip
    body = [
        [r["case"], f"{r['cpu_quota_pct']} %" if r["cpu_quota_pct"] else "none", r["t_bound_s"],
         f"{r['measured_t_last_s']:.2f} ({', '.join(f'{t:.2f}' for t in r['measured_runs_s'])})",
         r["sim_t_last_s"], f"{r['error_pct']:+.1f}",
         r["measured_bound_ratio"], r["sim_bound_ratio"],
         r["measured_uplink_bytes"], r["sim_uplink_bytes"], r["uplink_exact"], r["calibration"]]
        for r in rows
    ]  # fmt: skip
    return _table(head, body)


def control_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ["N", "measured (bench.scale)", "model", "error %", "model seeder", "model member"]
    body = [
        [r["pis"], r["measured_mean_per_s"], r["model_mean_per_s"], f"{r['error_pct']:+.1f}",
         r["model_seeder_per_s"], r["model_member_per_s"]]
        for r in rows
    ]  # fmt: skip
    return _table(head, body)


def projection_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ["case", "Pis", "F MiB", "origin ÷ F", "backbone ÷ S·F (from siblings)", "bound s",
            "last Pi s", "last ÷ bound", "last ÷ first-holders bound", "Pi t ÷ bound p50 / p90",
            "frames/s seeder / member (fetch)", "sim wall s"]  # fmt: skip
    body = []
    for r in rows:
        q = r["ratio_quantiles"]
        c = r["control_frames"]
        bb = r.get("backbone_bytes")
        backbone = (
            f"{r['backbone_ratio']:.3f} ({bb['from_siblings'] / bb['into_sites']:.2f})"
            if bb else "-"
        )  # fmt: skip
        body.append(
            [r["case"], r["pis"], r["size_bytes"] / MiB, f"{r['origin_ratio']:.3f}", backbone,
             r["t_bound_s"], r["t_last_s"], r["bound_ratio"], _first_holders(r),
             f"{q['p50']:.2f} / {q['p90']:.2f}",
             f"{c['seeder_during_fetch_per_s']:.0f} / {c['member_during_fetch_per_s']:.1f}",
             r["wall_s"]]
        )  # fmt: skip
    return _table(head, body)


def _first_holders(row: dict[str, Any]) -> str:
    """The last Pi against the bound of a rule where only the first holders send (site: -)."""
    bound = row.get("t_bound_first_holders_s")
    return f"{row['t_last_s'] / bound:.2f}" if bound else "-"


def markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    if report.get("calibration_note"):
        lines += [f"**Note: {report['calibration_note']}.**", ""]
    if "validation" in report:
        lines += ["Validation (shaped site, U=20 Mbit/s, d=u=100 Mbit/s):", ""]
        lines += [*validation_table(report["validation"]), ""]
    if "control_validation" in report:
        lines += ["Control frames at rest, sent + received per second (mean over the agents):", ""]
        lines += [*control_table(report["control_validation"]), ""]
    if report.get("projection"):
        lines += ["Projection:", ""]
        lines += [*projection_table(report["projection"]), ""]
    return "\n".join(lines)
