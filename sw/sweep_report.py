"""The report of a sweep: a row per point, the Pareto front per board, a plot.

Throughput is the model's predicted inferences per second when the SPEC names a model,
else the peak GMAC/s of both engines together (int8 and ternary MACs per cycle times the
clock). The clock is the one the design runs at: the lower of fmax and the config's
target after place-and-route, the target after synthesis alone (which has no fmax).
A built point is on the Pareto front of its board when no other built point of that
board has at least its throughput with at most its logic, and one of the two strictly.
"""

import json
from pathlib import Path

__all__ = ["sweep_rows", "pareto_front", "markdown_table", "write_report", "plot_front"]


def _row(entry, record):
    point = entry.point
    row = {"board": point.board, "config_id": point.config.config_id,
           "parameters": entry.parameters, "stage": point.stage, "seed": point.seed,
           "key": point.key, "status": record["status"] if record else "missing",
           "reason": record.get("reason") if record else "not built (sweep stopped)",
           "int8_macs_per_cycle": point.config.int8_macs_per_cycle,
           "ternary_macs_per_cycle": point.config.ternary_macs_per_cycle,
           "model_cycles_per_inference": (entry.model_cost.cycles_per_inference
                                          if entry.model_cost else None)}
    if row["status"] != "ok":
        return row
    report = record["report"]
    resources = report["resources"]
    fmax = min((c["fmax_mhz"] for c in report["clocks"].values()), default=None)
    target = point.config.clock_hz / 1e6
    clock = target if fmax is None else min(fmax, target)
    macs = row["int8_macs_per_cycle"] + row["ternary_macs_per_cycle"]
    row.update({
        "logic": resources["logic"]["used"], "logic_available": resources["logic"]["available"],
        "logic_fraction": resources["logic"]["used"] / resources["logic"]["available"],
        "dsp": resources.get("dsp", {}).get("used"), "bram": resources.get("bram", {}).get("used"),
        "spram": resources.get("spram", {}).get("used"),
        "fmax_mhz": fmax, "target_mhz": target, "clock_mhz": clock,
        "timing_met": report["timing_met"], "gmacs": macs * clock / 1e3,
        "inferences_per_second": (entry.model_cost.inferences_per_second(clock * 1e6)
                                  if entry.model_cost else None),
        "build_seconds": report["build_seconds"],
    })
    return row


def _throughput(row):
    return row["inferences_per_second"] if row["model_cycles_per_inference"] else row["gmacs"]


def pareto_front(rows):
    """Return the set of indices of ``rows`` on their board's Pareto front."""
    built = [(i, row) for i, row in enumerate(rows) if row["status"] == "ok"]
    front = set()
    for i, row in built:
        dominated = any(
            other["board"] == row["board"]
            and _throughput(other) >= _throughput(row) and other["logic"] <= row["logic"]
            and (_throughput(other) > _throughput(row) or other["logic"] < row["logic"])
            for _, other in built)
        if not dominated:
            front.add(i)
    return front


def sweep_rows(entries, records):
    """Return a row per entry (``records``: key -> record), Pareto front marked."""
    rows = [_row(entry, records.get(entry.point.key)) for entry in entries]
    front = pareto_front(rows)
    for index, row in enumerate(rows):
        row["pareto"] = index in front
    return rows


def _cell(value, digits=2):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(rows, invalid=()):
    """Return the rows (and the invalid points with their reasons) as Markdown."""
    model = any(row["model_cycles_per_inference"] for row in rows)
    head = ("| board | config | parameters | seed | status | logic | DSP | BRAM | fmax MHz "
            "| clock MHz | MAC/cycle (int8 + ternary) | GMAC/s |"
            + (" inferences/s |" if model else "") + " build s | Pareto |")
    lines = [head, "|" + "---|" * head.count(" |")]
    for row in rows:
        parameters = ", ".join(f"{k}={v}" for k, v in row["parameters"].items())
        macs = f"{row['int8_macs_per_cycle']} + {row['ternary_macs_per_cycle']}"
        if row["status"] != "ok":
            reason = " ".join(str(row["reason"]).split())[:120].replace("|", "/")
            cells = [row["board"], row["config_id"], parameters, _cell(row["seed"]),
                     f"{row['status']}: {reason}", "", "", "", "", "", macs, ""]
            cells += [""] if model else []
            cells += ["", ""]
        else:
            logic = f"{row['logic']}/{row['logic_available']} ({row['logic_fraction']:.0%})"
            cells = [row["board"], row["config_id"], parameters, _cell(row["seed"]), "ok",
                     logic, _cell(row["dsp"]), _cell(row["bram"]), _cell(row["fmax_mhz"], 1),
                     _cell(row["clock_mhz"], 1), macs, _cell(row["gmacs"])]
            cells += [_cell(row["inferences_per_second"], 0)] if model else []
            cells += [_cell(row["build_seconds"], 0), "**yes**" if row["pareto"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    if invalid:
        lines += ["", "Invalid points (not built):", ""]
        lines += [f"- {', '.join(f'{k}={v}' for k, v in params.items())}: {reason}"
                  for params, reason in invalid]
    return "\n".join(lines)


def plot_front(rows, path):
    """Plot throughput against logic used, one panel per board, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boards = list(dict.fromkeys(row["board"] for row in rows if row["status"] == "ok"))
    model = any(row["model_cycles_per_inference"] for row in rows)
    fig, axes = plt.subplots(1, max(1, len(boards)), figsize=(5.5 * max(1, len(boards)), 4.2),
                             squeeze=False)
    for ax, board in zip(axes[0], boards):
        built = [row for row in rows if row["status"] == "ok" and row["board"] == board]
        front = sorted((row for row in built if row["pareto"]), key=lambda r: r["logic"])
        ax.scatter([r["logic"] for r in built], [_throughput(r) for r in built],
                   color="tab:blue", label="built point")
        ax.plot([r["logic"] for r in front], [_throughput(r) for r in front], "o-",
                color="tab:red", label="Pareto front")
        for row in front:
            ax.annotate(row["config_id"], (row["logic"], _throughput(row)), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
        available = built[0]["logic_available"]
        ax.set_xlim(0, available * 1.05)
        ax.set_ylim(bottom=0)
        ax.axvline(available, color="grey", linestyle=":", label="device logic")
        ax.set_xlabel("logic used (iCE40 LCs / ECP5 LUT4s)")
        ax.set_ylabel("predicted inferences/s" if model else "peak GMAC/s")
        ax.set_title(board)
        ax.legend(fontsize=7)
    if not boards:
        axes[0][0].text(0.5, 0.5, "no built point", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out_dir, rows, invalid, summary):
    """Write ``report.json``, ``report.md`` and ``pareto.png`` into ``out_dir``.

    Returns the report dict (``summary`` plus the rows and invalid points).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**summary, "points": rows,
              "invalid": [{"parameters": params, "reason": reason}
                          for params, reason in invalid]}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown_table(rows, invalid) + "\n")
    plot_front(rows, out_dir / "pareto.png")
    return report
