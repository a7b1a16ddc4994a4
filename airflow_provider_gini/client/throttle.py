"""Pacing: how fast one session sends to Gini's API, learnt from Gini's 429s.

Gini answers 429 ("too many requests", API v5 code 2400) to a client that sends faster than it
allows, and publishes neither the limit nor a header that announces it (docs/gini-compat.md).
A pull with 16 workers that only retried its 429s would go on sending into the limit, each retry
one more refused request. So a session paces itself:

- It is unpaced until the first 429, or paced at ``max_requests_per_second`` when that is set.
- A 429 cuts the pace to 90 % of the lower of the pace and the rate Gini accepted since the last
  cut (at most the last two seconds): the limit is measured, not guessed. The 429s of requests
  whose turn was given before a cut do not cut again (they went out at the old pace), so one
  burst costs one cut.
- While the pace is what holds the session back, it grows by 2 % per second, so a raised limit,
  or a share another task no longer uses, is found again; another 429 cuts it back.
- ``Retry-After`` on a 429 holds every request of the session until then (at most
  ``hold_cap`` seconds; the retry policy gives up on longer waits).

The pace is per session and shared by its threads (a pull's workers and its listing). Several
tasks on one account each learn their share: the same cut and growth for each lets them settle,
as TCP's AIMD does.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 2.0  # seconds of accepted answers that measure the rate Gini accepts
MIN_SPAN = 0.5  # seconds: a shorter measurement does not tell the rate Gini accepts
CUT = 0.9
GROWTH = 0.02  # per second, while the pace is what holds the session back
MIN_RATE = 0.5  # requests per second: never slower than one every two seconds


class Throttle:
    def __init__(
        self,
        ceiling: float | None = None,
        *,
        hold_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.hold_cap = hold_cap
        self._clock = clock
        self._lock = threading.Lock()
        self.rate: float | None = ceiling  # requests per second; None: unpaced
        self.refused = 0  # 429s answered
        self.cuts = 0
        self._next = 0.0  # when the next request may go
        self._hold = 0.0  # Retry-After: no request before this
        self._grown_at = 0.0
        self._cut_at: float | None = None
        self._waited_at = -math.inf  # when a request last had to wait for its turn
        self._started: float | None = None
        self._accepted: deque[float] = deque()

    def turn(self, cancelled: threading.Event) -> int:
        """Wait for this request's turn (``cancelled`` ends the wait); returns the pace it was
        given at, for :meth:`answered`."""
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
            start = max(now, self._hold)
            if self.rate is not None:
                start = max(start, self._next)
                self._next = start + 1.0 / self.rate
            if start > now:
                self._waited_at = now
            pace = self.cuts
        if start > now:
            cancelled.wait(start - now)
        return pace

    def answered(self, pace: int, status: int, retry_after: float | None = None) -> None:
        """What became of a request given its turn at ``pace`` (from :meth:`turn`)."""
        with self._lock:
            now = self._clock()
            if status != 429:
                self._accepted.append(now)
                if len(self._accepted) > 64:  # trimmed now and then: it is only read at a cut
                    self._trim(now)
                self._grow(now)
                return
            self.refused += 1
            if retry_after:
                self._hold = max(self._hold, now + min(retry_after, self.hold_cap))
            if pace != self.cuts:  # its turn came at the pace before the last cut
                return
            self.rate = max(MIN_RATE, self._measured(now) * CUT)
            self._next = max(self._next, now)
            self._grown_at = self._cut_at = now
            self.cuts += 1

    def _measured(self, now: float) -> float:
        """The pace to cut from: what Gini accepted since the last cut, when that is long enough
        to tell (Gini's bucket, if it keeps one, was empty then, so this is its refill rate); the
        pace itself for a 429 soon after a cut; before any cut, what was accepted so far."""
        self._trim(now)
        since = self._cut_at if self._cut_at is not None else (self._started or now)
        span = min(now - since, WINDOW)
        if span < MIN_SPAN and self.rate is not None:
            return self.rate
        accepted = sum(1 for t in self._accepted if t >= now - span)
        measured = accepted / max(span, MIN_SPAN)
        return measured if self.rate is None else min(self.rate, measured)

    def _grow(self, now: float) -> None:
        if self.rate is None:
            return
        if now - self._waited_at < 1.0 and (self.ceiling is None or self.rate < self.ceiling):
            self.rate *= 1.0 + GROWTH * (now - self._grown_at)
            if self.ceiling is not None:
                self.rate = min(self.rate, self.ceiling)
        self._grown_at = now

    def _trim(self, now: float) -> None:
        while self._accepted and self._accepted[0] < now - WINDOW:
            self._accepted.popleft()

    def describe(self) -> str:
        pace = "unpaced" if self.rate is None else f"paced at {self.rate:.1f} requests/s"
        return f"{self.refused} request(s) answered 429, {self.cuts} cut(s) of the pace, now {pace}"
