"""``python -m tests.drf_app``: serve the test-only DRF app on a free loopback port.

Prints one JSON line, ``{"base_url": ..., "api_key": ...}``, then serves until killed or
until its standard input closes (so a killed test run leaves no server behind).
The database is a temporary SQLite file, gone when the process ends.
``DRF_APP_THROTTLE=burst=10/s,sustained=100/min`` sets DRF's throttle rates.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import threading


def _exit_with_parent(tmp: tempfile.TemporaryDirectory[str]) -> None:
    """The test run holds our stdin: when it closes (the run ended or was killed), stop."""
    sys.stdin.read()
    tmp.cleanup()
    os._exit(0)


def main() -> None:
    tmp = tempfile.TemporaryDirectory(prefix="willo-drf-")
    os.environ["DRF_APP_DB"] = os.path.join(tmp.name, "db.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.drf_app.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from waitress import create_server

    from tests.drf_app import policy, seed

    call_command("migrate", run_syncdb=True, verbosity=0)
    for pair in filter(None, os.environ.get("DRF_APP_THROTTLE", "").split(",")):
        scope, _, rate = pair.partition("=")
        policy.RATES[scope.strip()] = rate.strip() or None
    seed.API_KEY["key"] = os.environ.get("DRF_APP_API_KEY") or "sk_drf_" + secrets.token_hex(16)
    server = create_server(get_wsgi_application(), host="127.0.0.1", port=0, threads=4, ident="drf")
    base = f"http://127.0.0.1:{server.effective_port}"
    seed.reset("demo", base + "/")
    print(json.dumps({"base_url": base + "/api/integrations/v2", "api_key": seed.API_KEY["key"]}), flush=True)
    threading.Thread(target=_exit_with_parent, args=(tmp,), daemon=True).start()
    try:
        server.run()
    finally:
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
