"""Fault rules: which request gets which fault.

A rule matches by HTTP method and a glob on the path. Among the requests it
matches, ``first`` picks the first N and ``every`` every k-th; ``times`` caps
how often it fires in all. Latency rules add up; of the other kinds the first
rule that fires decides what the request gets. How each kind is carried out on
the wire lives in ``middleware.py``.

``rate_limit`` is a token bucket instead: ``rate`` requests per second with
bursts of ``burst``, one bucket per OAuth client (``per="client"``) or per
client and user (``per="user"``); a request that finds its bucket empty gets
429. Gini documents 429 (API v5 code 2400) but no limits and no headers
(docs/gini-compat.md), so the numbers are the caller's, and ``Retry-After`` is
sent only with ``retry_after_header``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, Field, PrivateAttr

FaultKind = Literal[
    "latency",  # sleep before the request is handled
    "status",  # answer `status` (5xx, 408, 401, ...) with a JSON error body, handler not run
    "retry_after",  # answer `status` (default 429) with Retry-After in seconds or HTTP-date form
    "reset",  # TCP reset instead of a response; with after_handler the request takes effect first
    "close_mid_body",  # send the headers and half the body, then close the connection
    "slow_body",  # send the headers and half the body, stall for `delay`, then the rest
    "html",  # answer an HTML error page with `status` (200 and 502 are the usual ones)
    "truncate",  # run the handler, then send only the first half of its body (valid framing)
    "rate_limit",  # 429 (v5 body, code 2400) when the client's (or user's) token bucket is empty
]
# Who a request is for the rate limit: (OAuth client id, user id), or None when the request
# names no known client (it goes on, to be answered 401).
Identity = tuple[str, str | None] | None


class FaultRule(BaseModel):
    id: str | None = Field(default=None, description="Assigned by the sandbox when omitted")
    kind: FaultKind
    path: str = Field(default="*", description="fnmatch glob on the request path, e.g. '/documents/*'")
    method: str | None = Field(default=None, description="Only this HTTP method; any when omitted")
    first: int | None = Field(default=None, ge=1, description="Fire on the first N matching requests")
    every: int | None = Field(default=None, ge=1, description="Fire on every k-th matching request")
    times: int | None = Field(default=None, ge=0, description="Fire at most this many times in all")
    status: int | None = Field(default=None, ge=100, le=599, description="Status for status/retry_after/html")
    delay: float = Field(default=0.0, ge=0, le=600, description="Seconds, for latency and slow_body")
    jitter: float = Field(
        default=0.0, ge=0, le=600, description="Extra random seconds in [0, jitter] for latency"
    )
    retry_after: float = Field(default=1.0, ge=0, description="Retry-After value in seconds")
    retry_after_form: Literal["seconds", "http-date"] = "seconds"
    after_handler: bool = Field(default=False, description="reset: let the request take effect, then reset")
    rate: float = Field(default=10.0, gt=0, le=1_000_000, description="rate_limit: requests per second")
    burst: int | None = Field(
        default=None, ge=1, description="rate_limit: bucket size (default: one second's worth of rate)"
    )
    per: Literal["client", "user"] = Field(
        default="client", description="rate_limit: one bucket per OAuth client, or per client and user"
    )
    retry_after_header: bool = Field(
        default=False, description="rate_limit: send Retry-After (seconds until the bucket has a token)"
    )
    matched: int = Field(default=0, description="Requests this rule has matched (read only)")
    fired: int = Field(default=0, description="Times this rule has fired (read only)")
    # rate_limit: (tokens, time they were counted) per bucket key; seconds until the refused
    # request's bucket has a token again (read by decide() at once, before another request runs).
    _buckets: dict[tuple[str, str | None], tuple[float, float]] = PrivateAttr(default_factory=dict)
    _wait: float = PrivateAttr(default=0.0)

    def default_status(self) -> int:
        if self.status is not None:
            return self.status
        return {"retry_after": 429, "rate_limit": 429, "html": 502}.get(self.kind, 503)

    def fires(self, method: str, path: str, identity: Callable[[], Identity] = lambda: None) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if not fnmatchcase(path, self.path):
            return False
        if self.kind == "rate_limit":
            return self._empty_bucket(identity())
        self.matched += 1
        if self.first is not None and self.matched > self.first:
            return False
        if self.every is not None and self.matched % self.every:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True

    def _empty_bucket(self, who: Identity) -> bool:
        """Take a token from the request's bucket; True (fire: 429) when there is none."""
        if who is None:
            return False
        self.matched += 1
        key = (who[0], who[1] if self.per == "user" else None)
        size = float(self.burst or max(1, math.ceil(self.rate)))
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (size, now))
        tokens = min(size, tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return False
        self._buckets[key] = (tokens, now)
        self._wait = (1.0 - tokens) / self.rate
        self.fired += 1
        return True


@dataclass
class FaultDecision:
    delay: float = 0.0
    action: FaultRule | None = None
    fired: list[str] = field(default_factory=list)
    wait: float = 0.0  # rate_limit: seconds until the request's bucket has a token again

    def retry_after(self) -> str:
        """The Retry-After value of the action's answer, in whole seconds (RFC 9110 has no
        fractions), rounded up so a client that waits that long finds a token."""
        assert self.action is not None
        if self.action.kind == "rate_limit":
            return str(max(1, math.ceil(self.wait)))
        return str(int(self.action.retry_after + 0.999))


class FaultBook:
    """The active rules, in the order they were added."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1
        for rule in rules or []:
            self.add(rule)

    def add(self, rule: FaultRule) -> FaultRule:
        rule = rule.model_copy(update={"matched": 0, "fired": 0}, deep=True)  # its own buckets
        if rule.id is None:
            rule.id = f"f{self._next_id}"
            self._next_id += 1
        self._rules = [r for r in self._rules if r.id != rule.id] + [rule]
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules = []

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def decide(
        self, method: str, path: str, identity: Callable[[], Identity] = lambda: None
    ) -> FaultDecision:
        """``identity`` says whose request it is; asked only by a rate limit, at most once."""
        decision = FaultDecision()
        if not self._rules:
            return decision
        known: list[Identity] = []

        def who() -> Identity:
            if not known:
                known.append(identity())
            return known[0]

        for rule in self._rules:
            if rule.kind != "latency" and decision.action is not None:
                continue
            if not rule.fires(method, path, who):
                continue
            decision.fired.append(f"{rule.id}:{rule.kind}")
            if rule.kind == "rate_limit":
                decision.wait = rule._wait
            if rule.kind == "latency":
                decision.delay += rule.delay + (random.uniform(0, rule.jitter) if rule.jitter else 0.0)
            else:
                decision.action = rule
        return decision
