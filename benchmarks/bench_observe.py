"""What issue 15's operations pieces cost on the hot paths, in process (so the machine's
load, which swamps a few microseconds end to end, falls on every variant alike):

- one webhook delivery through listen's WSGI stack (probes in front of the receiver,
  the inbox's SQLite commit included), with no metrics recorder (the baseline, as
  ``WILLO_METRICS=off``), with prometheus counters, and with counters plus a JSON
  info line per delivery (``--log-format json -v``) written to /dev/null;
- the pieces alone: ``telemetry.inc`` with and without a recorder, ``bind``, a log
  call below the level, one JSON log line formatted.

An API key is registered as a secret, as in a service, so log lines are scrubbed.

Batches of each variant are interleaved; medians of the batches."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT))


def per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main(batches: int = 15, per_batch: int = 200) -> dict[str, float]:
    from werkzeug.test import Client

    from connector import redaction, telemetry
    from connector.observe import Probes, metrics, store_writable, wsgi
    from connector.state.store import StateStore
    from connector.triggers.receiver import Inbox, make_app

    redaction.register("sk_bench_observe_0123456789abcdef")  # as a service has: every line is scrubbed
    tmp = Path(tempfile.mkdtemp())
    store = StateStore(tmp / "state")
    recorder = metrics()  # made once; each variant turns it on or off
    client = Client(wsgi(Probes(store, checks=[store_writable(store)]), make_app(Inbox(store))))
    root = logging.getLogger()
    sink = open(os.devnull, "w")  # noqa: SIM115
    handler = logging.StreamHandler(sink)
    handler.setFormatter(telemetry.JsonFormatter())
    handler.addFilter(telemetry.ContextFilter())
    root.handlers[:] = [handler]
    counter = [0]

    def deliver() -> None:
        counter[0] += 1
        body = json.dumps(
            {
                "id": f"evt_{counter[0]}_{hashlib.sha1(str(counter[0]).encode()).hexdigest()}",
                "event": "new_comment",
                "data": {"participant": {"key": "k"}, "interview": {"key": "i"}, "comment": {"text": "hi"}},
            }
        ).encode()
        assert client.post("/willo/webhooks", data=body).status_code == 202

    variants = {
        "no recorder (baseline)": (None, logging.WARNING),
        "prometheus counters": (recorder, logging.WARNING),
        "counters + JSON info line": (recorder, logging.INFO),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(batches):
        for name, (rec, level) in variants.items():
            telemetry.set_recorder(rec)
            root.setLevel(level)
            samples[name].append(per_call(deliver, per_batch))
    base = statistics.median(samples["no recorder (baseline)"])
    out: dict[str, float] = {}
    for name, values in samples.items():
        med = statistics.median(values)
        out[f"delivery, {name} (us)"] = med * 1e6
        out[f"delivery, {name} / baseline"] = med / base

    root.setLevel(logging.WARNING)
    log = logging.getLogger("connector.bench")
    telemetry.set_recorder(None)
    out["telemetry.inc, no recorder (us)"] = (
        per_call(lambda: telemetry.inc("deliveries", outcome="queued"), 200_000) * 1e6
    )
    telemetry.set_recorder(recorder)
    out["telemetry.inc, prometheus (us)"] = (
        per_call(lambda: telemetry.inc("deliveries", outcome="queued"), 200_000) * 1e6
    )

    def bound() -> None:
        with telemetry.bind(trigger="willo.new_score", event_id=12):
            pass

    out["telemetry.bind (us)"] = per_call(bound, 200_000) * 1e6
    out["log.info below the level (us)"] = per_call(lambda: log.info("event %s done", 12), 200_000) * 1e6
    record = log.makeRecord("connector.bench", logging.INFO, __file__, 1, "event %s done", (12,), None)
    record.willo = {"run_id": "20261129-000000-abcdef12", "trigger": "willo.new_score", "event_id": 12}
    fmt = telemetry.JsonFormatter()
    out["one JSON line formatted (us)"] = per_call(lambda: fmt.format(record), 50_000) * 1e6
    root.handlers[:] = []
    sink.close()
    for k, v in out.items():
        print(f"{k}: {v:.2f}")
    return out


if __name__ == "__main__":
    main()
