"""The figures issue 6 asks for, tallied while the reliability suite runs and printed at its end."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()
FAULT_KINDS: set[str] = set()
BAD_INPUTS: set[str] = set()


def lines() -> list[str]:
    if not (COUNTS or FAULT_KINDS or BAD_INPUTS):
        return []
    return [
        f"fault kinds tried: {len(FAULT_KINDS)} ({', '.join(sorted(FAULT_KINDS))})",
        f"fault-matrix DAG runs: {COUNTS['fault_runs']}, ended correct: {COUNTS['fault_runs_correct']}",
        f"kill-and-resume runs ended complete: {COUNTS['kill_resume_correct']} "
        f"(temporary files the kill left, all gone after the rerun: {COUNTS['kill_temporaries']})",
        f"upload runs: {COUNTS['upload_runs']}, documents created: {COUNTS['uploads_created']}",
        f"bad inputs tried: {len(BAD_INPUTS)}",
        f"secrets searched: {COUNTS['secrets_searched']} (in {COUNTS['texts_searched']} texts, "
        f"{COUNTS['chars_searched']:,} characters), secrets found: {COUNTS['secret_hits']}",
        f"tokens in URLs: {COUNTS['tokens_in_urls']} of {COUNTS['urls_checked']} requests checked",
        f"duplicates created: {COUNTS['duplicates']}",
    ]
