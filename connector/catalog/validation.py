"""``willo-connector validate``: manifests, resource files and workflows, all problems at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from connector.catalog.types import Catalog
from connector.yamlio import Document, YamlError, load_file

#: ``check(doc, catalog) -> problems`` for workflow documents; workflows sit above the
#: catalog, so whoever validates workflows (the CLI) passes their checker in.
WorkflowCheck = Callable[[Document, Catalog], list[str]]


def kind_of(doc: Document) -> str:
    data = doc.data
    if isinstance(data, dict):
        if "workflow" in data:
            return "workflow"
        if "resources" in data and "manifest" not in data:
            return "resources"
    return "manifest"


def validate_paths(
    paths: tuple[str, ...] | list[str],
    check_workflow: WorkflowCheck,
    warn_workflow: WorkflowCheck | None = None,
) -> list[dict[str, Any]]:
    """One result per file: ``{path, kind, ok, problems, warnings}``. Warnings (a
    deprecated manifest, a workflow using one) do not make a file fail."""
    from connector.catalog import manifests, schemas
    from connector.catalog.index import get_catalog, yaml_files

    catalog = get_catalog()
    results: list[dict[str, Any]] = []
    docs: list[tuple[Document, str]] = []
    for path in yaml_files(paths):
        try:
            doc = load_file(path)
        except YamlError as exc:
            results.append(
                {"path": str(path), "kind": "yaml", "ok": False, "problems": [str(exc)], "warnings": []}
            )
            continue
        docs.append((doc, kind_of(doc)))
    # resources: the built-in ones plus any given here
    builtin = _builtin_resources()
    given = [(doc.path, doc) for doc, kind in docs if kind == "resources"]
    problems_by_path: dict[str, list[str]] = {}
    _, extra = manifests.read_files(
        [("validate", Path(p)) for p, _ in given], problems_by_path.setdefault("_", [])
    )
    resources = {**builtin, **extra}
    ids: dict[str, str] = {}
    for doc, kind in docs:
        problems: list[str] = []
        warnings: list[str] = []
        if kind == "resources":
            for name, schema in (doc.data.get("resources") or {}).items():
                for ptr, msg in schemas.check_schema(schema, resources):
                    problems.append(
                        f"{doc.where('/resources/' + name + ptr)}: "
                        f"/resources/{name}{ptr}: not a valid JSON Schema: {msg}"
                    )
        elif kind == "workflow":
            problems.extend(check_workflow(doc, catalog))
            if warn_workflow is not None:
                warnings.extend(warn_workflow(doc, catalog))
        else:
            m = manifests.validate(doc, "validate", resources, problems)
            if m is not None:
                if m.deprecation():
                    warnings.append(f"{doc.where('/deprecated')}: /deprecated: {m.deprecation()}")
                if m.id in ids:  # installed copies of the same files are not a clash
                    problems.append(f"{doc.where('/id')}: /id: {m.id} is also defined in {ids[m.id]}")
                ids.setdefault(m.id, doc.path)
                if m.handler and m.handler not in _handler_ids():
                    problems.append(
                        f"{doc.where('/handler')}: /handler: no installed plugin "
                        f"registers handler {m.handler}"
                    )
        results.append(
            {"path": doc.path, "kind": kind, "ok": not problems, "problems": problems, "warnings": warnings}
        )
    return results


def _builtin_resources() -> dict[str, Any]:
    from willo_manifests import ROOT

    from connector.catalog import manifests

    path = ROOT / "resources.yaml"
    _, found = manifests.read_files([("willo_actions", path)], [])
    return found


def _handler_ids() -> set[str]:
    from connector.catalog.plugins import get_host, handler_map

    return set(handler_map(get_host()))
