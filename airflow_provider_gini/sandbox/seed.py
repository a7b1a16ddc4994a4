"""The deterministic demo data set: a few documents a day over several days.

Same config, same documents (ids, dates, bytes, extractions), so the demo and
the tests can name what they expect. Creation dates fall in office hours
(UTC), so each calendar day of ``[seed_start, seed_start + seed_days)`` has
new documents for a daily pull.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, time, timedelta, timezone

from airflow_provider_gini.sandbox.invoices import make_paper
from airflow_provider_gini.sandbox.state import Document, SandboxState

SEED_NAMESPACE = uuid.UUID("6f1c2a7e-3b0d-4f7a-9a55-0c9d8e1b2a3c")
ERROR_DAY = 2  # the third seeded day holds one unreadable scan that ends in ERROR


def seed(state: SandboxState) -> int:
    config = state.config
    users = [state.users_by_email[u.email.lower()] for u in config.users]
    count = 0
    for user_no, user in enumerate(users):
        rng = random.Random(f"{config.seed_start.isoformat()}/{user_no}")
        per_day = (4, 7) if user_no == 0 else (1, 2)
        for day in range(config.seed_days):
            issued = config.seed_start + timedelta(days=day)
            start = datetime.combine(issued, time(7, 0), tzinfo=timezone.utc)
            minutes = sorted(rng.sample(range(0, 11 * 60), rng.randint(*per_day)))
            for n, minute in enumerate(minutes):
                created = start + timedelta(minutes=minute, seconds=rng.randrange(60))
                paper = make_paper(rng, issued)
                failing = user_no == 0 and day == ERROR_DAY and n == 0
                scanned = failing or rng.random() < 0.25
                kind = "rechnung" if paper.doctype == "Invoice" else "zahlschein"
                name = f"{kind}-{issued:%Y%m%d}-{n + 1}.{'jpg' if scanned else 'pdf'}"
                doc_id = str(uuid.uuid5(SEED_NAMESPACE, f"{user.email}/{day}/{n}"))
                state.add_document(
                    Document(
                        id=doc_id,
                        owner=user.id,
                        name=name,
                        created_ms=int(created.timestamp() * 1000),
                        content_type="image/jpeg" if scanned else "application/pdf",
                        kind="regular",
                        ready_at=0.0,
                        outcome="ERROR" if failing else "COMPLETED",
                        paper=paper,
                        page_count=1,
                        doctype=paper.doctype,
                        source_classification="SCANNED" if scanned else "NATIVE",
                    )
                )
                count += 1
    return count
