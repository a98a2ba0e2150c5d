"""The engines wing: where a workflow's units of work run. ``local`` runs them on
threads of this process."""
