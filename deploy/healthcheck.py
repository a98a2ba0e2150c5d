"""Container health check: exit 0 when willo-connector's /ready answers 200, else 1.

``WILLO_PROBE_URL`` is where its probes answer (default http://127.0.0.1:9180); the
first argument, when given, is the path (default /ready; /health for liveness).
Proxy settings are ignored: the probes are on loopback."""

import os
import sys
import urllib.error
import urllib.request

base = os.environ.get("WILLO_PROBE_URL", "http://127.0.0.1:9180").rstrip("/")
path = sys.argv[1] if len(sys.argv) > 1 else "/ready"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(base + path, timeout=4) as resp:
        print(resp.read(500).decode(errors="replace"))
        sys.exit(0 if resp.status == 200 else 1)
except urllib.error.HTTPError as exc:  # 503: not ready, with the reasons
    print(exc.read(500).decode(errors="replace"))
    sys.exit(1)
except OSError as exc:
    print(f"{base}{path}: {exc}")
    sys.exit(1)
