"""uvicorn without its tick: a server whose main loop sleeps until it is told to stop.

uvicorn's ``Server.main_loop`` wakes every 0.1 s to refresh its ``Date`` header (each
second) and to see whether a signal asked it to exit: 10 wake-ups a second of a server
that has nothing to do. Here the loop waits on an event, set by the exit signals: they
are taken with the event loop's own signal handling (``add_signal_handler``), whose
wake-up descriptor rouses the loop whichever thread the kernel delivered the signal to
(a handler set with ``signal.signal`` alone runs only when the main thread next runs
Python code, which a loop asleep in ``epoll_wait`` would not). The ``Date`` header is
then set by :class:`~taskwatcher.web.auth.Guard` on each response instead.
"""

from __future__ import annotations

import asyncio
import signal

import uvicorn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class QuietServer(uvicorn.Server):
    """``uvicorn.Server`` whose main loop costs nothing while nothing happens."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None = None) -> None:
        """``on_exit``: called at the exit signal, before the shutdown waits for connections to
        end (the event streams, which would not end by themselves)."""
        super().__init__(config)
        self.on_exit = on_exit

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        taken = []
        for sig in EXIT_SIGNALS:
            try:
                self._loop.add_signal_handler(sig, self.handle_exit, sig, None)
                taken.append(sig)
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread: uvicorn's own
                pass
        try:
            while not await self.on_tick(0):  # uvicorn's checks (should_exit, the request limit)
                await self._wake.wait()
                self._wake.clear()
        finally:
            for sig in taken:
                self._loop.remove_signal_handler(sig)
                signal.signal(sig, self.handle_exit)  # a second one during shutdown forces it

    def handle_exit(self, sig: int, frame: object) -> None:
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        if self.on_exit is not None:
            self.on_exit()
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
