"""Report figures as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state).

* :func:`heatmap`   true×informative over hook/layer × magnitude for one direction
* :func:`tradeoff`  % truthful vs % informative, and true×informative vs KL, as magnitude grows
* :func:`agreement_figure`  judge vs people: confusion matrices and bias with its 95% CI
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from evals.agreement import Agreement
from reports.tables import BOTH, KINDS, HeadlineRow, heatmap_grid, layer_of

DPI = 110


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _text(s: str) -> str:
    """Label text shown literally (no mathtext from a stray ``$``)."""
    return str(s).replace("$", r"\$")


def _pct(x: float) -> float:
    return 100 * x if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def heatmap(rows: Sequence[HeadlineRow], direction: str) -> bytes | None:
    """% true×informative for each (hook, magnitude) of ``direction``; None if nothing to show."""
    hooks, mags, grid = heatmap_grid(rows, direction)
    if not hooks or all(math.isnan(v) for line in grid for v in line):
        return None
    import numpy as np

    values = np.array([[_pct(v) for v in line] for line in grid], dtype=float)
    fig = _figure(1.6 + 0.9 * len(mags), 1.3 + 0.42 * len(hooks))
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(values)
    image = ax.imshow(masked, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for h in range(len(hooks)):
        for m in range(len(mags)):
            v = values[h, m]
            ax.text(m, h, "–" if math.isnan(v) else f"{v:.0f}", ha="center", va="center",
                    color="white" if not math.isnan(v) and v < 60 else "black", fontsize=8)
    ax.set_xticks(range(len(mags)), [f"{m:g}" for m in mags])
    ax.set_yticks(range(len(hooks)), [_text(f"L{layer_of(h)}" if layer_of(h) is not None
                                            else h) for h in hooks])
    ax.set_xlabel("magnitude (0 = unsteered baseline)")
    ax.set_ylabel("layer / hook")
    ax.set_title(_text(f"{direction}: % true×informative"), fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.9, label="%")
    return _png(fig)


def _lines(rows: Sequence[HeadlineRow]) -> dict[str, list[HeadlineRow]]:
    """{direction @ hook: rows by magnitude, the baseline included at magnitude 0}."""
    base = [r for r in rows if r.is_baseline][:1]
    out: dict[str, list[HeadlineRow]] = {}
    for r in rows:
        if not r.is_baseline:
            out.setdefault(f"{r.direction} @ {r.hook}", []).append(r)
    return {k: sorted(v + base, key=lambda r: r.magnitude) for k, v in sorted(out.items())}


def tradeoff(rows: Sequence[HeadlineRow]) -> bytes | None:
    """Left: % truthful vs % informative per direction/hook as magnitude grows (baseline = ■).
    Right: % true×informative vs KL from the unsteered model (the fluency cost)."""
    lines = _lines(rows)
    has_rates = any(r.rates["truthful"].n and r.rates["informative"].n for r in rows)
    has_kl = any(math.isfinite(float(r.metrics.get("kl", math.nan))) for r in rows)
    if not lines or not (has_rates or has_kl):
        return None
    fig = _figure(10, 4.2)
    left, right = fig.subplots(1, 2)
    base = next((r for r in rows if r.is_baseline), None)
    for name, line in lines.items():
        t = [_pct(r.rates["truthful"].rate) for r in line]
        i = [_pct(r.rates["informative"].rate) for r in line]
        ti = [_pct(r.rates[BOTH].rate) for r in line]
        kl = [float(r.metrics.get("kl", math.nan)) for r in line]
        (drawn,) = left.plot(i, t, marker="o", ms=4, label=_text(name))
        right.plot(kl, ti, marker="o", ms=4, color=drawn.get_color(), label=_text(name))
        for r, x, y in zip(line, i, t):
            if not r.is_baseline and math.isfinite(x) and math.isfinite(y):
                left.annotate(f"{r.magnitude:g}", (x, y), fontsize=7, xytext=(3, 3),
                              textcoords="offset points")
    if base is not None:
        left.plot([_pct(base.rates["informative"].rate)], [_pct(base.rates["truthful"].rate)],
                  "ks", ms=8, label="baseline")
        right.plot([float(base.metrics.get("kl", 0.0))], [_pct(base.rates[BOTH].rate)], "ks",
                   ms=8)
    left.set_xlabel("% informative")
    left.set_ylabel("% truthful")
    left.set_title("truthfulness vs informativeness (labels: magnitude)", fontsize=10)
    right.set_xlabel("KL(unsteered ‖ steered) on reference text, nats/token")
    right.set_ylabel("% true×informative")
    right.set_title("gain vs fluency cost", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=7, loc="best")
    return _png(fig)


def agreement_figure(stats: Mapping[str, Agreement]) -> bytes | None:
    """Confusion matrix per kind (judge rows × human columns) and each kind's bias (judge rate
    minus human rate) with its 95% CI."""
    kinds = [k for k in KINDS if k in stats and stats[k].n > 0]
    if not kinds:
        return None
    fig = _figure(3.2 * (len(kinds) + 1), 3.2)
    axes = fig.subplots(1, len(kinds) + 1)
    for ax, kind in zip(axes, kinds):
        a = stats[kind]
        counts = [[a.tp, a.fp], [a.fn, a.tn]]
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, a.n))
        for r in range(2):
            for c in range(2):
                ax.text(c, r, str(counts[r][c]), ha="center", va="center", fontsize=11,
                        color="white" if counts[r][c] > a.n / 2 else "black")
        ax.set_xticks([0, 1], ["human yes", "human no"])
        ax.set_yticks([0, 1], ["judge yes", "judge no"])
        ax.set_title(f"{kind}: acc {a.accuracy:.2f}, κ {a.kappa:.2f} (n={a.n})", fontsize=9)
    ax = axes[-1]
    ys = list(range(len(kinds)))
    bias = [100 * stats[k].bias for k in kinds]
    err = [100 * stats[k].bias_ci if math.isfinite(stats[k].bias_ci) else 0 for k in kinds]
    ax.errorbar(bias, ys, xerr=err, fmt="o", capsize=4)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(ys, kinds)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
    ax.set_xlabel("judge − human, points (95% CI)")
    ax.set_title("judge bias", fontsize=9)
    return _png(fig)
