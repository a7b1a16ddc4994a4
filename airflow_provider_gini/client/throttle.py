"""Pacing: how fast one session sends to Gini's API, learnt from Gini's 429s.

Gini answers 429 ("too many requests", API v5 code 2400) to a client that sends faster than it
allows, and publishes neither the limit nor a header that announces it (docs/gini-compat.md).
A pull with 16 workers that only retried its 429s would go on sending into the limit, each retry
one more refused request. So a session paces itself:

- It is unpaced until the first 429, or paced at ``max_requests_per_second`` when that is set.
- A 429 cuts the pace to 90 % of the lower of the pace and the rate Gini accepted since the last
  cut (at most the last two seconds): the limit is measured, not guessed. With nothing accepted
  to measure, the cut is from the rate the session was sending at. The 429s of requests whose
  turn was given before a cut do not cut again (they went out at the old pace), so one burst
  costs one cut.
- While the pace is what holds the session back, it grows by 2 % of the pace at the last cut
  per second, so a raised limit, or a share another task no longer uses, is found again; the
  next 429 cuts it back.
- ``Retry-After`` on a 429 holds every request of the session until then, those already waiting
  for their turn too (at most ``hold_cap`` seconds; the retry policy gives up on longer waits).

The pace is per session and shared by its threads (a pull's workers and its listing). Tasks on
one account pace themselves each; together they keep under the limit, in shares that need not
be equal. Waiting for a turn happens before a request's deadline starts, and is not counted
against the retry budget: it is bounded by the threads waiting over the pace, and the hold.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 2.0  # seconds of answers that measure the rate Gini accepts
MIN_SPAN = 0.5  # seconds: a shorter measurement does not tell the rate Gini accepts
CUT = 0.9
GROWTH = 0.02  # of the pace at the last cut, per second, while the pace holds the session back
MIN_RATE = 0.5  # requests per second: never slower than one every two seconds (or the ceiling)
LONGEST_WAIT = 60.0  # one sleep; a longer wait is several (Event.wait overflows on huge values)


class Throttle:
    def __init__(
        self,
        ceiling: float | None = None,
        *,
        hold_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.floor = MIN_RATE if ceiling is None else min(MIN_RATE, ceiling)
        self.hold_cap = hold_cap
        self._clock = clock
        self._lock = threading.Lock()
        self.rate: float | None = ceiling  # requests per second; None: unpaced
        self.refused = 0  # 429s answered
        self.cuts = 0
        self._next = 0.0  # when the next turn may start
        self._hold = 0.0  # Retry-After: no request before this
        self._base = 0.0  # the pace at the last cut, which growth is a share of
        self._grown_at = 0.0
        self._since: float | None = None  # where the measurement starts: the last cut, or a hold's end
        self._waited_at = -math.inf  # when a request last had to wait for its turn
        self._accepted: deque[float] = deque()
        self._turns: deque[float] = deque()

    def turn(self, cancelled: threading.Event) -> int:
        """Wait for this request's turn (``cancelled`` ends the wait); returns the pace it was
        given at, for :meth:`answered`."""
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = now
            slot = now
            if self.rate is not None:
                slot = max(now, self._next)
                self._next = slot + 1.0 / self.rate
            self._turns.append(slot)
            if len(self._turns) > 64:
                self._trim(now)
            pace = self.cuts
            if max(slot, self._hold) <= now:
                return pace
            self._waited_at = now
        while not cancelled.is_set():
            with self._lock:  # a Retry-After that came meanwhile holds this turn too
                left = max(slot, self._hold) - self._clock()
            if left <= 0:
                break
            cancelled.wait(min(left, LONGEST_WAIT))
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
            if retry_after is not None and retry_after > 0:
                self._hold = max(self._hold, now + min(retry_after, self.hold_cap))
            if pace != self.cuts:  # its turn came at the pace before the last cut
                return
            rate = max(self.floor, self._measured(now) * CUT)
            self.rate = rate if self.ceiling is None else min(rate, self.ceiling)
            self._next = max(self._next, now)
            # Measured and grown from now, or from the end of a hold just begun.
            self._since = self._grown_at = max(now, self._hold)
            self._base = self.rate
            self.cuts += 1

    def _measured(self, now: float) -> float:
        """The pace to cut from: what Gini accepted since the measurement began (the last cut,
        when Gini's bucket, if it keeps one, was empty: so its refill rate), when that is long
        enough to tell; the pace itself for a 429 soon after a cut; and what the session was
        sending at when Gini accepted nothing to measure."""
        self._trim(now)
        since = min(self._since if self._since is not None else now, now)
        span = min(now - since, WINDOW)
        if span < MIN_SPAN and self.rate is not None:
            return self.rate
        span = max(span, MIN_SPAN)
        accepted = sum(1 for t in self._accepted if t >= now - span)
        measured = accepted / span
        if accepted == 0:
            measured = sum(1 for t in self._turns if t >= now - span) / span
        return measured if self.rate is None else min(self.rate, measured)

    def _grow(self, now: float) -> None:
        if self.rate is None or now < self._grown_at:  # unpaced, or holding
            return
        if now - self._waited_at < 1.0 and (self.ceiling is None or self.rate < self.ceiling):
            # At most a second at a time: a long pause is no evidence that Gini takes more.
            self.rate += GROWTH * self._base * min(now - self._grown_at, 1.0)
            if self.ceiling is not None:
                self.rate = min(self.rate, self.ceiling)
        self._grown_at = now

    def _trim(self, now: float) -> None:
        for times in (self._accepted, self._turns):
            while times and times[0] < now - WINDOW:
                times.popleft()

    def describe(self) -> str:
        pace = "unpaced" if self.rate is None else f"paced at {self.rate:.1f} requests/s"
        return f"{self.refused} request(s) answered 429, {self.cuts} cut(s) of the pace, now {pace}"
