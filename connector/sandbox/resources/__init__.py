"""The sandbox's endpoints, one module per Willo resource (as ``manifests/actions/`` is
split), mixed into :class:`~connector.sandbox.app.SandboxApp`."""
