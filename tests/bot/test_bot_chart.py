"""The result chart: a PNG of loss and mAP drawn headless, only when there is something to draw."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot import chart
from infra.local.slack import PNG_SIGNATURE
from spotter.store import Attempt, Metrics
from tests.bot.test_bot_views import running

ROOT = Path(__file__).resolve().parents[2]


def trained(**fields: object) -> object:
    history = [Metrics(current=i, map50=0.04 * i, map50_95=0.02 * i) for i in range(1, 21)]
    losses = [(i, 5.0 / i) for i in range(1, 21)]
    return running().model_copy(update={"loss_history": losses, "metric_history": history, **fields})


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_a_trained_job_draws_a_png_of_the_configured_size() -> None:
    png = chart.render(trained())  # type: ignore[arg-type]
    assert png is not None and png.startswith(PNG_SIGNATURE)
    assert png_size(png) == (round(chart.WIDTH_INCHES * chart.DPI), round(chart.HEIGHT_INCHES * chart.DPI))


def test_nothing_to_draw_is_no_chart() -> None:
    assert chart.render(running()) is None
    unscored = running().model_copy(update={"metric_history": [Metrics(current=None, map50=0.5), Metrics(current=3)]})
    assert chart.render(unscored) is None, "an evaluation without an epoch or a score has no point"


def test_loss_alone_or_map_alone_is_drawn() -> None:
    only_loss = running().model_copy(update={"loss_history": [(1, 2.0), (2, 1.0)]})
    only_map = running().model_copy(update={"metric_history": [Metrics(current=5, map50=0.6)]})
    for rec in (only_loss, only_map):
        png = chart.render(rec)
        assert png is not None and png.startswith(PNG_SIGNATURE)


def test_a_resumed_attempt_is_its_own_line_not_a_zigzag() -> None:
    points = [(1, 3.0), (2, 2.0), (3, 1.5), (2, 1.9), (3, 1.4), (4, 1.2)]
    assert chart.segments(points) == [[(1, 3.0), (2, 2.0), (3, 1.5)], [(2, 1.9), (3, 1.4), (4, 1.2)]]
    assert chart.segments([]) == []
    resumed = trained(attempts=[*running().attempts, Attempt(number=2, instance_id="i-2", resumed_from=8)], attempt=2)
    assert list(chart._resumes(resumed)) == [(8, 2)]  # type: ignore[arg-type]
    assert chart.render(resumed) is not None  # type: ignore[arg-type]


def test_matplotlib_waits_for_a_chart_and_never_takes_a_display(tmp_path: Path) -> None:
    # A configured GUI backend and a display that is not there: the Agg canvas draws regardless.
    code = (
        "import sys, bot.notifier\n"
        "assert 'matplotlib' not in sys.modules, 'the cold start imported matplotlib'\n"
        "from tests.bot.test_bot_chart import trained\n"
        "from bot import chart\n"
        "assert chart.render(trained())\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot picks a backend and may open a display'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "TkAgg", "DISPLAY": ":99"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
