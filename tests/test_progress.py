"""toolkit_core.progress: plain lines off a terminal, rich bars on one, silence on ranks != 0."""

from __future__ import annotations

import io

import pytest

from toolkit_core import progress as tp


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    monkeypatch.delenv("TORCHTRUST_PROGRESS", raising=False)
    monkeypatch.delenv("RANK", raising=False)


def test_mode_follows_the_stream_and_the_environment(monkeypatch):
    assert tp.mode(io.StringIO()) == "plain"
    assert tp.mode(_Tty()) == "rich"
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "off")
    assert tp.mode(_Tty()) == "off"
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="TORCHTRUST_PROGRESS must be one of"):
        tp.mode(io.StringIO())


def test_plain_lines_count_steps_and_end_with_a_final_line():
    out = io.StringIO()
    with tp.progress("attack batches", total=4, stream=out, delay=0.0, interval=0.0) as bar:
        for _ in range(4):
            bar.advance()
        bar.update(info="acc 0.500")
    lines = out.getvalue().splitlines()
    # one line per advance (interval 0) and one for update; the final line is not repeated
    assert len(lines) == 5
    assert [ln.split()[2] for ln in lines[:4]] == ["1/4", "2/4", "3/4", "4/4"]
    assert lines[-1].startswith("attack batches 4/4 (100%)") and lines[-1].endswith("acc 0.500")


def test_plain_short_loops_print_nothing():
    out = io.StringIO()
    assert list(tp.track(range(7), "quick", stream=out)) == list(range(7))  # 2 s delay never reached
    assert out.getvalue() == ""


def test_unknown_total_prints_a_counter():
    out = io.StringIO()
    for _ in tp.track(iter(range(3)), "stream", stream=out, delay=0.0, interval=0.0):
        pass
    assert out.getvalue().splitlines()[-1].startswith("stream 3 ")


def test_silent_on_other_ranks(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "plain")
    out = io.StringIO()
    assert not tp.is_main_process()
    with tp.progress("x", total=2, stream=out, delay=0.0, interval=0.0) as bar:
        bar.advance(2)
    assert bar.done == 2 and out.getvalue() == ""


def test_enabled_false_is_silent():
    out = io.StringIO()
    with tp.progress("x", total=2, stream=out, delay=0.0, interval=0.0, enabled=False) as bar:
        bar.advance(2)
    assert out.getvalue() == ""


def test_rich_bars_nest_in_one_live_display():
    out = _Tty()
    with tp.progress("stages", total=2, stream=out) as outer:
        for _ in range(2):
            with tp.progress("inner", total=3, stream=out) as inner:
                inner.advance(3)
            assert tp._live is not None and tp._live_users == 1  # the inner task is gone, the display stays
            outer.advance()
    assert tp._live is None and tp._live_users == 0
    assert "stages" in out.getvalue()


def test_tasks_adapter_gives_one_bar_per_task(monkeypatch, capsys):
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "plain")
    with tp.Tasks(True) as bars:
        a = bars.add_task("epoch 1/2", total=3, stats="")
        bars._bars[a][0]._delay = bars._bars[a][0]._interval = 0.0
        bars.update(a, advance=3, stats="loss 0.5")
        b = bars.add_task("epoch 2/2", total=3, completed=1)  # ends the first bar
        assert bars._bars[b][0].done == 1
        bars.console.print("epoch 1/2: loss 0.5000")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch 1/2 3/3 (100%)") and out[0].endswith("loss 0.5")
    assert out[-1] == "epoch 1/2: loss 0.5000"
    with tp.Tasks(False) as bars:
        bars.update(bars.add_task("x", total=1), advance=1)
        bars.console.print("hidden")
    assert capsys.readouterr().out == ""
