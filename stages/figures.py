"""The figures of the `plot` stage, drawn from plain metrics and histories (no files).

Members of a sweep are named by the values that differ between them; the values all
share go into the figure's title. Legends sit outside the axes, epochs tick at whole
numbers, and beyond ``MANY`` members the comparison draws accuracy against a swept
number instead of a bar per member.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stages.members import Members, describe, text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Beyond this many members a legend or a bar per member stops being readable.
MANY = 8
BEST, OTHER = "tab:orange", "tab:blue"


def draw(
    evaluations: Mapping[str, dict[str, Any]], histories: Mapping[str, dict[str, Any]]
) -> dict[str, Figure]:
    """The figures by file name, from each member's metrics and training history."""
    members = describe(sorted(evaluations))
    best = best_member(evaluations)
    figures = {
        "learning_curves.png": _learning_curves(histories, members, best),
        "confusion_matrix.png": _confusion(evaluations[best]),
        "per_class_accuracy.png": _per_class(evaluations[best]),
    }
    if len(evaluations) > 1:
        figures["comparison.png"] = _comparison(evaluations, members, best)
        for name in ("confusion_matrix.png", "per_class_accuracy.png"):
            _title(figures[name], f"Best of {len(evaluations)} members: {members.short[best]}")
    return figures


def best_member(evaluations: Mapping[str, dict[str, Any]]) -> str:
    """The member of highest test accuracy (ties: the last label)."""
    return max(evaluations, key=lambda k: (evaluations[k]["accuracy"], k))


def _figure(**kwargs: Any) -> Figure:
    # A bare Figure renders with Agg on savefig without touching pyplot's global
    # backend or figure registry, so nothing leaks between calls.
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _title(figure: Figure, title: str, members: Members | None = None) -> None:
    """A figure title; values every member shares go on a second line, not in each label."""
    shared = textwrap.fill(text(members.common), 110) if members and members.common else ""
    figure.suptitle(f"{title}\n{shared}" if shared else title, fontsize="medium")


def _integer_epochs(*axes: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _learning_curves(
    histories: Mapping[str, dict[str, Any]], members: Members, best: str
) -> Figure:
    from matplotlib.lines import Line2D

    many = len(histories) > MANY
    figure = _figure(figsize=(10, 3.8))
    loss_ax, acc_ax = figure.subplots(1, 2)
    handles = []
    # Many members: all in grey, the best one in colour; a legend of 40 names says nothing.
    for i, (label, history) in enumerate(histories.items()):
        color = (BEST if label == best else "0.75") if many else f"C{i % 10}"
        style = {"color": color, "linewidth": 1.0 if many and label != best else 1.6}
        style["zorder"] = 3 if label == best else 2
        rows = history["epochs"]
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["train_loss"] for r in rows], **style)
        loss_ax.plot(epochs, [r["val_loss"] for r in rows], linestyle="--", **style)
        accuracy = {r["epoch"]: r["val_accuracy"] for r in rows}
        acc_ax.plot(epochs, list(accuracy.values()), linestyle="--", **style)
        if history["best_epoch"] in accuracy and (label == best or not many):
            acc_ax.plot(history["best_epoch"], accuracy[history["best_epoch"]], "*", ms=10, **style)
        if len(histories) > 1 and not many:
            handles.append(Line2D([], [], color=color, linewidth=3, label=members.short[label]))
    if many:
        handles += [
            Line2D([], [], color=BEST, linewidth=3, label=f"best: {members.short[best]}"),
            Line2D([], [], color="0.75", linewidth=3, label=f"the other {len(histories) - 1}"),
        ]
    handles += [
        Line2D([], [], color="black", label="train"),
        Line2D([], [], color="black", linestyle="--", label="validation"),
        Line2D([], [], color="black", marker="*", ms=10, linestyle="", label="checkpoint"),
    ]
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    _integer_epochs(loss_ax, acc_ax)
    # Below the panels, never on the curves; the title above holds the shared values.
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    _title(figure, "Learning curves", members)
    return figure


def _comparison(evaluations: Mapping[str, dict[str, Any]], members: Members, best: str) -> Figure:
    key = _swept_number(members)
    if len(evaluations) > MANY and key:
        return _against(evaluations, members, best, key)
    return _bars(evaluations, members, best)


def _bars(evaluations: Mapping[str, dict[str, Any]], members: Members, best: str) -> Figure:
    """One horizontal bar per member, best on top: long labels fit along the y axis."""
    order = sorted(evaluations, key=lambda k: (evaluations[k]["accuracy"], k))
    values = [evaluations[k]["accuracy"] for k in order]
    labels = [members.short[k] for k in order]
    width = min(4.5 + 0.07 * max(map(len, labels)), 16)
    figure = _figure(figsize=(width, 1.4 + 0.3 * len(order)))
    ax = figure.subplots()
    bars = ax.barh(range(len(order)), values, color=[BEST if k == best else OTHER for k in order])
    ax.bar_label(bars, [f"{v:.3f}" for v in values], padding=3, fontsize="small")
    ax.set_yticks(range(len(order)), labels, fontsize="small")
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set(xlim=(0, 1.12), ylim=(-0.6, len(order) - 0.4), xlabel="test accuracy")
    _title(figure, "Test accuracy per member (best in orange)", members)
    return figure


def _swept_number(members: Members) -> str | None:
    """The number to draw accuracy against: one on a log axis (a rate) first, then most values."""
    numeric = {k: v for k in members.varying if (v := members.numeric(k)) is not None}
    ranked = sorted(
        numeric, key=lambda k: (not members.log_scale(k), -len(set(numeric[k].values())))
    )
    return ranked[0] if ranked else None


def _against(
    evaluations: Mapping[str, dict[str, Any]], members: Members, best: str, key: str
) -> Figure:
    """Accuracy against one swept number, a line per combination of the other keys.

    More combinations than a legend can hold get a small panel each instead.
    """
    x = members.numeric(key) or {}
    rest = [k for k in members.varying if k != key]
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for label in sorted(evaluations, key=lambda k: x[k]):
        values = members.values[label]
        groups.setdefault(tuple((k, values[k]) for k in rest if k in values), []).append(label)
    groups = dict(sorted(groups.items(), key=lambda item: [_natural(v) for _, v in item[0]]))
    panels = len(groups) if len(groups) > MANY else 1
    cols = min(panels, 5)
    rows = -(-panels // cols)
    figure = _figure(figsize=(3.2 * cols + (4 if panels == 1 else 0), 2.4 * rows + 1.2))
    axes = list(figure.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).flat)
    for i, (group, labels) in enumerate(groups.items()):
        ax = axes[i if panels > 1 else 0]
        # In one panel the legend's title names the keys, so a line is named by values.
        name = ", ".join(v for _, v in group) if panels == 1 else text(group)
        color = "0.3" if panels > 1 else f"C{i % 10}"
        accuracy = [evaluations[k]["accuracy"] for k in labels]
        ax.plot([x[k] for k in labels], accuracy, "o-", color=color, label=name or None)
        if best in labels:
            top = evaluations[best]["accuracy"]
            ax.plot(x[best], top, "*", color=BEST, ms=16, zorder=3, label="best")
        if panels > 1:
            ax.set_title(name, fontsize="small")
    for ax in axes[len(groups) if panels > 1 else 1 :]:
        ax.set_visible(False)
    for ax in axes:
        ax.set_xscale("log" if members.log_scale(key) else "linear")
        ax.grid(alpha=0.3)
    if panels == 1:
        axes[0].set(xlabel=key, ylabel="test accuracy")
        if rest:
            legend = {"title": ", ".join(rest), "title_fontsize": "small", "fontsize": "small"}
            figure.legend(loc="outside lower center", ncols=min(len(groups) + 1, 3), **legend)
    else:
        figure.supxlabel(key)
        figure.supylabel("test accuracy")
    _title(figure, f"Test accuracy against {key} ({len(evaluations)} members, best: star)", members)
    return figure


def _natural(value: str) -> tuple[float, str]:
    """Numbers in numeric order (2 before 10), then the rest as text."""
    try:
        return (float(value), "")
    except ValueError:
        return (float("inf"), value)


def _confusion(metrics: dict[str, Any]) -> Figure:
    import numpy as np

    matrix = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    figure = _figure(figsize=(6, 5))
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0)
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (n={matrix.sum()})")
    if len(classes) <= 20:  # counts stay legible only on small matrices
        for (i, j), count in np.ndenumerate(matrix):
            dark = count > matrix.max() / 2
            ax.text(j, i, int(count), ha="center", va="center", color="white" if dark else "black")
    return figure


def _per_class(metrics: dict[str, Any]) -> Figure:
    classes = metrics["classes"]
    values = [metrics["per_class_accuracy"][c] or 0.0 for c in classes]
    figure = _figure(figsize=(max(6, 0.5 * len(classes)), 3.5))
    ax = figure.subplots()
    ax.bar(range(len(classes)), values, color="tab:blue")
    ax.axhline(metrics["accuracy"], color="grey", linestyle="--")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 10 else 0)
    title = f"Per-class accuracy (dashed: overall, {metrics['accuracy']:.3f})"
    ax.set(ylim=(0, 1.05), xlabel="class", ylabel="test accuracy", title=title)
    return figure
