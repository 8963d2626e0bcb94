"""Flask: the extension, the blueprint and its routes (API, ingest, streams, export, UI, auth, OpenAPI)."""
