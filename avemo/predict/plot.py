"""--plot: a stream's emotion probabilities over time as a picture (PNG, SVG or PDF by suffix), one line per
class at each window's centre, the predicted label as a coloured band underneath; written atomically."""
from __future__ import annotations

from pathlib import Path

from ..errors import StageError
from ..io import atomic_path, write_error

COLOURS = {"neutral": "#7f7f7f", "calm": "#17becf", "happy": "#ffbf00", "sad": "#1f77b4", "angry": "#d62728",
           "fearful": "#9467bd", "disgust": "#2ca02c", "surprised": "#ff7f0e"}


def plot_timeline(result, path: str | Path) -> Path:
    """`result`: a StreamResult (its windows' centres and probabilities). Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    windows = [w for w in result.windows if w.probs is not None]
    if not windows:
        raise StageError(f"{path}: no window of {result.source} has a prediction to plot")
    times = [w.centre_s for w in windows]
    figure, (lines, band) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True,
                                         gridspec_kw={"height_ratios": [6, 1]})
    for index, name in enumerate(result.classes):
        lines.plot(times, [float(w.probs[index]) for w in windows], label=name, color=COLOURS.get(name),
                   linewidth=1.6)
    lines.set_ylabel("probability")
    lines.set_ylim(0, 1)
    lines.set_title(f"{Path(str(result.source)).name}: {result.model}, windows of {result.grid.window_s:.2f} s "
                    f"every {result.grid.hop_s:.2f} s")
    lines.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    lines.grid(alpha=0.3)
    half = result.grid.hop_s / 2
    for w, t in zip(windows, times):
        band.axvspan(t - half, t + half, color=COLOURS.get(w.label, "#333333"), linewidth=0)
    band.set_yticks([])
    band.set_ylabel("label", rotation=0, ha="right", va="center")
    band.set_xlabel("time (s, window centre)")
    figure.tight_layout()
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=path.suffix.lstrip(".").lower(), dpi=110)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        plt.close(figure)
    return path
