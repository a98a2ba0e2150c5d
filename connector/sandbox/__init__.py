"""The sandbox: a local simulator of the Willo Integration API V2.

It plays Willo's side of the contract (the one place outside ``manifests/`` that
knows Willo's paths): every endpoint the manifests use, in-memory state, API-key
auth with roles, DRF-style pages and errors, throttling, injected faults, webhook
deliveries and simulation endpoints for what people do in Willo's own UI.

The host never imports this package except where the CLI starts it.
"""

from __future__ import annotations

from connector.sandbox.server import Sandbox, SandboxOptions

__all__ = ["Sandbox", "SandboxOptions"]
