"""``[core] hostname_callable`` of the Celery test's workers (tests/executors/test_celery_executor.py):
both run on this machine, so each names itself from its own environment, and the metadata DB's
``task_instance.hostname`` tells which worker ran a task."""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("GINI_CELERY_WORKER") or socket.getfqdn()
