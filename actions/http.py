"""The built-in ``http.request`` action: any HTTP(S) URL, never with the Willo key."""

from __future__ import annotations

from typing import Any


def http_request(inputs: dict[str, Any], client: Any) -> dict[str, Any]:
    """Send the request through the host's outbound client (its own session: the
    Willo key is never on it) and return status, headers and json or text."""
    return dict(
        client.http(
            inputs.get("method", "GET"),
            inputs["url"],
            headers=inputs.get("headers"),
            params=inputs.get("query"),
            json=inputs.get("json"),
            body=inputs.get("body"),
            timeout=inputs.get("timeout"),
            fail_on_status=inputs.get("fail_on_status", True),
        )
    )
