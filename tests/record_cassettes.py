"""Record one vcrpy cassette per action into ``cassettes/``.

    python -m tests.record_cassettes                 # against a fresh local sandbox
    python -m tests.record_cassettes --only willo.get_interview
    WILLO_API_KEY=... python -m tests.record_cassettes --live   # against Willo itself

Each scenario's setup (not recorded) creates what the call needs through the
catalog's own actions; the call itself is recorded, with every credential header
filtered and the key scrubbed from anything else. Inputs go to
``cassettes/inputs.json`` for the replay tests. ``--live`` creates (and leaves)
test resources in the account the key belongs to: use a test account.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from connector.http.cassettes import record
from connector.http.client import Settings
from connector.workflows.runtime import Connector
from tests.cassette_scenarios import SCENARIOS

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="Record only this action id (repeatable).")
    parser.add_argument("--live", action="store_true", help="Use WILLO_BASE_URL/WILLO_API_KEY.")
    args = parser.parse_args(argv)
    box = None
    if args.live:
        settings = Settings.from_env()
        if not settings.api_key:
            print("error: set WILLO_API_KEY for --live", file=sys.stderr)
            return 2
    else:
        from connector.sandbox import Sandbox, SandboxOptions

        box = Sandbox(SandboxOptions(rate_limit=(0, 0))).start()
        settings = Settings.from_env(base_url=box.base_url, api_key=box.api_key, rate="0")
    os.environ["WILLO_MAX_CONCURRENCY"] = "1"
    inputs_file = CASSETTES / "inputs.json"
    saved = json.loads(inputs_file.read_text()) if inputs_file.exists() else {}
    conn = Connector(settings=settings)
    conn.serial = True
    try:
        for action, setup in sorted(SCENARIOS.items()):
            if args.only and action not in args.only:
                continue
            if box is not None:
                box.reset()
            inputs = setup(conn)
            path = CASSETTES / f"{action}.yaml"
            path.unlink(missing_ok=True)
            with record(path, secrets=[settings.api_key or ""]):
                conn.call(action, inputs)
            saved[action] = inputs
            print(f"recorded {path.name}")
    finally:
        if box is not None:
            box.stop()
    inputs_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
