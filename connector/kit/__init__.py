"""The plugin kit: what a plugin author uses to build, test and check a plugin.

``scaffold`` (``willo-connector new plugin|action|trigger``), ``scenarios`` (how each
action is exercised), ``recording`` (``willo-connector record``: cassettes of a call,
a run or every scenario), ``verify`` (``willo-connector plugins verify``),
``harness`` (run a workflow or poll a trigger and inspect the result),
``pytest_plugin`` (the ``pytest11`` fixtures) and ``docs`` (``willo-connector export
docs`` and the manifest reference). It sits on the top floor, beside the CLI.
"""
