"""Run every benchmark and print its figures: ``python benchmarks/run.py [NAME ...]``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ALL = [
    "bench_startup",
    "bench_call",
    "bench_read",
    "bench_foreach",
    "bench_backfill",
    "bench_sandbox",
    "bench_poll",
    "bench_webhook_ingest",
    "bench_observe",
    "bench_retention",
    "bench_bulk_invite",
    "bench_pacing",
    "bench_accounts",
    "bench_interop",
    "bench_flows",
    "bench_hostile",
    "bench_scaffold",
    "bench_temporal",
]

if __name__ == "__main__":
    for name in sys.argv[1:] or ALL:
        print(f"== {name}")
        importlib.import_module(name).main()
