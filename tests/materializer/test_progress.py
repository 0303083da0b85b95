import io

from ferry.materializer import SilentProgress, TerminalProgress, progress_for


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_pipe_gets_nothing() -> None:
    assert isinstance(progress_for(io.StringIO(), {}), SilentProgress)
    terminal = FakeTerminal()
    bar = progress_for(terminal, {"users": 200})
    assert isinstance(bar, TerminalProgress)
    bar.update("users", 50, 10)
    bar.update("users", 60, 20)  # within 0.1 s of the last draw: not redrawn
    bar.finish("users", 200, 150)
    lines = terminal.getvalue().split("\r")
    assert len(lines) == 2
    assert "users" in lines[0]
    assert "25%" in lines[0]
    assert "read 50 written 10" in lines[0]
    assert "100%" in lines[1]
    assert "read 200 written 150" in lines[1]
    assert lines[1].endswith("\n")
