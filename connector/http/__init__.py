"""The HTTP wing: the Willo client (``client``), client-side pacing (``pacing``) and
vcrpy cassettes (``cassettes``). It knows how to talk to an API like Willo's, never
Willo's paths (those live in the manifests)."""
