"""A server-sent-events reader for tests: reads ``/api/v1/live`` in a thread (with the token in
the ``Authorization`` header) and hands parsed events to the test, which waits with a deadline."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class Event:
    type: str
    data: Any
    id: str | None = None


@dataclass
class LiveReader:
    url: str
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    status_code: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _connected: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> LiveReader:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._connected.wait(10), "live stream did not answer"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
            client.stream(
                "GET",
                f"{self.url}/api/v1/live",
                params=self.params,
                headers={"Accept": "text/event-stream", **self.headers},
            ) as resp,
        ):
            self.status_code = resp.status_code
            self._connected.set()
            if resp.status_code != 200:
                return
            kind, data, eid = "message", [], None
            for line in resp.iter_lines():
                if self._stop.is_set():
                    return
                if line == "":
                    if data:
                        self.events.put(Event(kind, orjson.loads("\n".join(data)), eid))
                    kind, data, eid = "message", [], None
                elif line.startswith(":"):
                    self.events.put(Event("comment", line))
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        eid = value

    def wait_for(self, match: Callable[[Event], bool], timeout: float) -> Event:
        """The first event for which ``match`` holds; fails at the deadline."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching live event within {timeout} s; saw {seen[-5:]}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if match(ev):
                return ev
            seen.append(ev.type)
