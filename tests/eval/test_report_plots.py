import torch

from edgewise.eval import report


def test_every_curve_is_told_apart_and_the_reference_is_black(tmp_path, monkeypatch) -> None:
    """A benchmark plots more attacks than the palette has colours: no two curves share colour and dash, the
    reference (the best of all) is the black one, and the legend names every curve."""
    figures = []
    monkeypatch.setattr(report.plt, "close", figures.append)
    curves = {f"attack-{i}": torch.rand(20, dtype=torch.float64) + i for i in range(13)}
    curves["best of all"] = torch.rand(20, dtype=torch.float64)
    report.plot_curves(tmp_path / "curves.png", curves, distance="l2", title="t", reference="best of all")
    assert (tmp_path / "curves.png").stat().st_size > 0
    lines = figures[0].axes[0].get_lines()
    styles = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(styles) == len(lines) == len(curves)
    black = [line.get_label() for line in lines if line.get_color() == "black"]
    assert len(black) == 1 and black[0].startswith("best of all")
    legend = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    assert [label.split(" (area")[0] for label in legend] == [*curves]
