"""Tests for the figures of the `plot` stage: labels, ticks and legends, measured when drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stages.figures import draw

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

# Synthetic members: figures are about layout, so no model needs training here.
SIX = [f"train.epochs=2,train.lr={lr},train.model={m}" for lr in ("0.001", "0.1") for m in "abc"]
FORTY = [
    f"train.batch_size={b},train.epochs=3,train.lr={lr},train.model.channels={c}"
    for b in (16, 32, 64, 128)
    for lr in ("0.0001", "0.0003", "0.001", "0.003", "0.01")
    for c in ("[8,16]", "[16,32]")
]


def synthetic(labels: list[str], epochs: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each member's metrics and history, as evaluate and train write them."""
    evaluations, histories = {}, {}
    for i, label in enumerate(labels):
        accuracy = 0.5 + 0.4 * ((i * 7) % len(labels)) / len(labels)
        confusion = [
            [9 if r == c else 1 if c == (r + 1) % 3 else 0 for c in range(3)] for r in range(3)
        ]
        evaluations[label] = {
            "accuracy": accuracy,
            "loss": 1 - accuracy,
            "classes": ["0", "1", "2"],
            "confusion_matrix": confusion,
            "n_test": 30,
            "per_class_accuracy": {"0": 0.9, "1": 0.9, "2": 0.9},
        }
        rows = [
            {
                "epoch": e,
                "train_loss": 1 / e,
                "val_loss": 1.1 / e,
                "val_accuracy": accuracy * e / epochs,
            }
            for e in range(1, epochs + 1)
        ]
        histories[label] = {"best_epoch": epochs, "epochs": rows}
    return evaluations, histories


def _rendered(figure: Figure) -> RendererAgg:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def _legend_texts(figure: Figure) -> list[str]:
    (legend,) = figure.legends
    return [t.get_text() for t in legend.get_texts()]


def test_members_are_named_by_what_differs_and_the_title_holds_what_all_share() -> None:
    figures = draw(*synthetic(SIX))
    curves, comparison = figures["learning_curves.png"], figures["comparison.png"]
    assert _legend_texts(curves)[:6] == [
        f"train.lr={lr}, train.model={m}" for lr in ("0.001", "0.1") for m in "abc"
    ]
    assert all("epochs" not in t for t in _legend_texts(curves))
    for figure in (curves, comparison):
        assert figure.get_suptitle().splitlines()[1] == "train.epochs=2"
    (ax,) = comparison.axes
    labels = {t.get_text() for t in ax.get_yticklabels()}
    assert labels == {f"train.lr={lr}, train.model={m}" for lr in ("0.001", "0.1") for m in "abc"}


def test_epochs_tick_at_whole_numbers() -> None:
    for labels in (["default"], SIX):
        curves = draw(*synthetic(labels, epochs=2))["learning_curves.png"]
        _rendered(curves)
        for ax in curves.axes:
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert ticks == [1, 2], ticks


def test_the_legend_sits_off_the_data_and_inside_the_figure() -> None:
    cases = [
        (["default"], "learning_curves.png"),
        (SIX, "learning_curves.png"),
        (FORTY, "learning_curves.png"),
        (FORTY, "comparison.png"),
    ]
    for labels, name in cases:
        figure = draw(*synthetic(labels))[name]
        renderer = _rendered(figure)
        (legend,) = figure.legends
        box = legend.get_window_extent(renderer)
        assert _inside(box, figure), (len(labels), name)
        for ax in figure.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), (len(labels), name)


def test_the_comparison_labels_fit_inside_the_figure() -> None:
    from matplotlib.text import Text

    # Long values that differ make long labels; long values all share, a long title.
    shared = ",".join(f"prepare_data.dataset.option_{i}=[1,2,3]" for i in range(8))
    long = [
        f"{label},train.model.channels=[{i},256,512,1024],{shared}" for i, label in enumerate(SIX)
    ]
    for labels in (SIX, long):
        figure = draw(*synthetic(labels))["comparison.png"]
        renderer = _rendered(figure)
        (ax,) = figure.axes
        ends = {t.get_text()[-5:] for t in ax.get_yticklabels()}
        assert ends == ({"del=a", "del=b", "del=c"} if labels is SIX else {"1024]"})
        # Every text drawn: member labels, values at the bars, ticks and the title.
        for text in figure.findobj(Text):
            if text.get_visible() and text.get_text():
                assert _inside(text.get_window_extent(renderer), figure), text.get_text()


def _inside(box: Bbox, figure: Figure) -> bool:
    outer = figure.bbox
    return outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0 and box.y1 <= outer.y1


def test_forty_members_draw_accuracy_against_the_learning_rate() -> None:
    evaluations, histories = synthetic(FORTY, epochs=3)
    figures = draw(evaluations, histories)
    (ax,) = figures["comparison.png"].axes
    assert (ax.get_xscale(), ax.get_xlabel()) == ("log", "train.lr")
    # One line per batch size and channels, named by values: the legend's title has the keys.
    assert _legend_texts(figures["comparison.png"])[:2] == ["16, [16,32]", "16, [8,16]"]
    assert len(_legend_texts(figures["comparison.png"])) == 9  # eight lines and the best
    assert len(_legend_texts(figures["learning_curves.png"])) == 5  # best, the rest, 3 styles


def test_more_combinations_than_a_legend_holds_get_a_panel_each() -> None:
    # Sorted as plot passes them: seed=10 comes before seed=2, yet the panels go 0, 1, 2, ...
    labels = sorted(f"train.lr={lr},train.seed={s}" for lr in ("0.001", "0.01") for s in range(20))
    figure = draw(*synthetic(labels))["comparison.png"]
    shown = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [f"train.seed={seed}" for seed in range(20)]
    assert {ax.get_xscale() for ax in shown} == {"log"}
    assert not figure.legends
