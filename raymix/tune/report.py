"""A search's results as a CSV, a printed table and a plot of the metric per parameter."""

from __future__ import annotations

import csv
import io
import math

from raymix import storage


def trials_csv(path, trials: list[dict]):
    columns: list[str] = []
    for row in trials:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in trials:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    storage.write_text(path, buffer.getvalue())
    return path


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def trial_table(result) -> str:
    """The trials, best first, then a line on timings."""
    metric, keys = result.metric, result.keys
    sign = -1 if result.mode == "max" else 1
    rows = sorted(
        result.trials,
        key=lambda r: (bool(r["error"]), sign * _number(r[metric])),
    )
    short = [_short_key(k) for k in keys]
    header = ["#", *short, metric, "ran", "seconds", "data"]
    body = []
    for k, r in enumerate(rows, 1):
        data = "reused" if r["reused_data"] else f"load {r['prepare_seconds']:.1f}s"
        state = " (stopped)" if r["stopped_early"] else ""
        state = f" ({r['error']})" if r["error"] else state
        if not r["passes_run"] and not r["error"]:
            data, state = "", " (not run)"
        body.append(
            [
                str(k),
                *(_fmt(r[key]) for key in keys),
                _fmt(r[metric]) + state,
                str(r["passes_run"]),
                f"{r['seconds']:.1f}",
                data,
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    s = result.stats
    lines.append(
        f"{s['trials']} trials; {s['trials_this_run']} in {result.seconds:.1f} s "
        f"({s['trials_per_minute']:.2f}/min); "
        f"data loaded {s['data_loads']} time(s) ({s['prepare_seconds']:.1f} s, "
        f"{100 * s['prepare_share']:.1f}% of trial time; without reuse "
        f"{100 * s['prepare_share_without_reuse']:.1f}%); reset {s['reset_seconds_mean']:.3f} s "
        "per reused trial"
    )
    return "\n".join(lines)


def _short_key(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[1:]) if parts[0] == "coordinates" and len(parts) > 2 else key


def _number(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(value) else value


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def plot_search(
    path, trials: list[dict], keys: list[str], metric: str, best: dict, space
) -> object | None:
    """One panel per searched parameter: the metric of every trial against its value (log
    axis for log-scaled domains), the best trial marked. PNG with matplotlib; None without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    done = [r for r in trials if not r["error"] and not math.isnan(_number(r[metric]))]
    n = len(keys)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        values = [r[key] for r in done]
        y = [r[metric] for r in done]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            x = values
            if _log_scale(space.space.get(key), values):
                ax.set_xscale("log")
            elif all(isinstance(v, int) for v in values):
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        else:
            labels = sorted({str(v) for v in values})
            x = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        stopped = [r["stopped_early"] for r in done]
        ax.scatter(
            [xi for xi, s in zip(x, stopped, strict=True) if not s],
            [yi for yi, s in zip(y, stopped, strict=True) if not s],
            s=22,
            color="tab:blue",
            label="trial",
        )
        if any(stopped):
            ax.scatter(
                [xi for xi, s in zip(x, stopped, strict=True) if s],
                [yi for yi, s in zip(y, stopped, strict=True) if s],
                s=22,
                facecolors="none",
                edgecolors="tab:gray",
                label="stopped early",
            )
        bx = best[key] if numeric else labels.index(str(best[key]))
        ax.scatter([bx], [best[metric]], s=90, marker="*", color="tab:red", label="best", zorder=3)
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(f"validation {metric}", fontsize=9)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{len(done)} trials: validation {metric} per searched parameter", fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes(path, png.getvalue())
    return path


def _log_scale(domain, values) -> bool:
    try:
        from ray.tune.search.sample import LogUniform

        if hasattr(domain, "get_sampler") and isinstance(domain.get_sampler(), LogUniform):
            return True
    except ImportError:  # pragma: no cover
        pass
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and bool(values) and max(values) / min(values) > 100
