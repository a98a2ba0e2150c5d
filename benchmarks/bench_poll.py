"""Requests per poll of a polling trigger (issue 6): when nothing changed (aim: 1), and
when 45 new items arrived (more than one page of 30)."""

from __future__ import annotations

import os
import tempfile

import requests
from common import sandbox_process

from connector.http.client import Settings
from connector.state.store import StateStore
from connector.triggers.polling import Poller
from connector.workflows.runtime import Connector

INTERVIEW = "927982d43d577f03e4877aab073a730e"


def main() -> dict[str, float]:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    with sandbox_process("--rate-limit", "0") as (base, key):
        conn = Connector(settings=Settings.from_env(base_url=base, api_key=key, rate="0"))
        poller = Poller(conn, StateStore(tempfile.mkdtemp()), "willo.new_participant")
        first = poller.poll()
        unchanged = [poller.poll().requests for _ in range(10)]
        for i in range(45):
            requests.post(
                f"{base}/participants/",
                json={"interview": INTERVIEW, "email": f"n{i}@example.com"},
                headers={"Authorization": key},
            ).raise_for_status()
        burst = poller.poll()
    out = {
        "first poll (requests)": float(first.requests),
        "unchanged poll (requests, mean of 10)": sum(unchanged) / len(unchanged),
        "poll after 45 new items (requests)": float(burst.requests),
        "events emitted by it": float(len(burst.events)),
    }
    for k, v in out.items():
        print(f"{k}: {v:.1f}")
    return out


if __name__ == "__main__":
    main()
