"""The catalog wing: plugins, manifests and their schemas.

``hookspecs`` (the hooks a plugin implements), ``plugins`` (the plugin host),
``types`` (``Manifest``, ``Catalog``), ``manifests`` (reading and validating manifest
files), ``index`` (the catalog, cached on disk), ``schemas`` (JSON Schema),
``drift`` (output drift), ``options`` (dynamic input choices) and ``validation``
(``willo-connector validate``). It imports nothing above it.
"""

from connector._compat import moved_attributes

__getattr__ = moved_attributes(
    __name__,
    {
        "Manifest": "connector.catalog.types",
        "Catalog": "connector.catalog.types",
        "get_catalog": "connector.catalog.index",
        "forget": "connector.catalog.index",
        "build": "connector.catalog.index",
        "yaml_files": "connector.catalog.index",
        "cache_dir": "connector.catalog.index",
        "CACHE_FORMAT": "connector.catalog.index",
    },
)
