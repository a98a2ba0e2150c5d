"""A small Django REST framework app shaped like Willo's API: test-only.

Willo's API V2 has every mark of Django REST framework; the sandbox imitates it.
This app *is* DRF (Django 5.2, DRF 3.18, django-filter: pinned in the ``test``
extra), so that tests can run the client, the composites, polling and workflows
against the real framework, and compare the sandbox with it request by request
(``tests/test_drf_contract.py``). Stock DRF wherever DRF decides (routing with
trailing slashes, ``APPEND_SLASH``, ModelSerializers that send every field,
field-error shapes, ``PageNumberPagination``, django-filter, DRF's own throttles);
the sandbox's reading of Willo wherever Willo decides (the stage board, the
invite link), with the sandbox's own seed data.

Run by the ``drf_server`` fixture: ``python -m tests.drf_app`` serves it on a free
loopback port with a temporary SQLite database and prints one JSON line with its
base URL and API key.
"""
