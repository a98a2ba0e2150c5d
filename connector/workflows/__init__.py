"""The workflows wing: workflow files (``model``), sandboxed expressions
(``expressions``), calling one action (``runtime``) and running a workflow with its
journal (``runner``)."""

from connector._compat import moved_attributes

__getattr__ = moved_attributes(
    __name__,
    {
        name: "connector.workflows.model"
        for name in ("Workflow", "load", "check_document", "walk_schema", "SCOPE", "STEP_FIELDS")
    },
)
