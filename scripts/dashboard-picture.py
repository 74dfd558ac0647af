"""Draws a Grafana dashboard's panels from a real Prometheus: each panel's queries evaluated with
query_range over [start, end], time series as lines and stats as their last value. Used by
scripts/dashboard-picture.sh (Grafana itself is not available where the project is built).

usage: dashboard-picture.py PROMETHEUS_URL DASHBOARD_JSON START END OUT_PNG
"""
import json
import math
import sys
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

prom, dash_path, start, end, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
dash = json.load(open(dash_path))
step = max(15, (end - start) // 120)


def query(expr):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}") as r:
        body = json.load(r)
    if body["status"] != "success":
        raise SystemExit(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out or "value"


def human(v, unit):
    if v is None or math.isnan(v):
        return "–"
    if unit == "bytes":
        for u in ["B", "KiB", "MiB", "GiB", "TiB"]:
            if abs(v) < 1024:
                return f"{v:.1f} {u}"
            v /= 1024
    if unit == "s":
        d = v / 86400
        return f"{d:.0f} days" if d >= 2 else f"{v:.2f} s"
    if unit == "percentunit":
        return f"{100 * v:.1f}%"
    return f"{v:g}"


panels = [p for p in dash["panels"] if p["type"] != "row"]
rows = {}
for p in panels:
    rows.setdefault(p["gridPos"]["y"], []).append(p)
fig = plt.figure(figsize=(24, 4.2 * len(rows)))
grid = fig.add_gridspec(len(rows), 24, hspace=0.55, wspace=2.0)
for r, y in enumerate(sorted(rows)):
    for p in rows[y]:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[r, g["x"] : g["x"] + g["w"]])
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        ax.set_title(p["title"], fontsize=11, loc="left")
        series = []
        for t in p["targets"]:
            for s in query(t["expr"]):
                xs = [(float(ts) - start) / 60 for ts, _ in s["values"]]
                ys = [float(v) for _, v in s["values"]]
                series.append((legend(t.get("legendFormat", ""), s["metric"]), xs, ys))
        if p["type"] == "stat":
            ax.axis("off")
            text = "\n".join(
                f"{name}: {human(ys[-1], unit)}" if len(series) > 1 else human(ys[-1], unit)
                for name, _, ys in series
            ) or "no data"
            ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=20 if len(series) < 2 else 14)
            continue
        for name, xs, ys in series[:8]:
            ax.plot(xs, [human_v if unit != "percentunit" else human_v * 100 for human_v in ys], label=name, linewidth=1.4)
        ax.set_xlabel("minutes", fontsize=8)
        if unit == "bytes":
            ax.set_ylabel("bytes", fontsize=8)
        elif unit == "percentunit":
            ax.set_ylabel("%", fontsize=8)
        elif unit == "s":
            ax.set_ylabel("seconds", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
fig.suptitle(f"{dash['title']}: {(end - start) // 60} minutes of make demo, queried from a real Prometheus", fontsize=14)
fig.savefig(out, dpi=70, bbox_inches="tight")
