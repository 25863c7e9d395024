"""A stand-in for Foundry Local's model catalog (POST .../asset-gallery/v1.0/models), so its web
service can serve a model offline. It answers every request with the catalog entries given as a
JSON file, in the shape foundry-local-sdk 2.2.1 reads ({"totalCount", "value": [entry, ...]}).

    python tests/foundry/catalog_standin.py CATALOG.json   # prints "READY http://127.0.0.1:PORT"
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def entry(alias: str, model_id: str, publisher: str, size: int, license_: str = "apache-2.0") -> dict:
    """One catalog entry for a CPU ONNX variant (fields as the SDK's catalog parser reads them: the
    license is read from systemCatalogData, the size from fileSizeBytes, reported in MiB)."""
    name, _, version = model_id.partition(":")
    return {
        "assetId": f"azureml://registries/azureml/models/{name}/versions/{version}",
        "entityId": model_id,
        "annotations": {"tags": {"alias": alias, "foundryLocal": "", "task": "chat-completion"},
                        "systemCatalogData": {"publisher": publisher, "displayName": alias, "license": license_,
                                             "licenseDescription": f"{license_} (stand-in catalog)"}},
        "properties": {"name": name, "version": int(version),
                       "variantInfo": {"parents": [], "variantMetadata": {
                           "modelType": "ONNX", "device": "cpu", "executionProvider": "CPUExecutionProvider",
                           "fileSizeBytes": size}}},
    }


def main() -> None:
    reply = json.dumps(json.loads(open(sys.argv[1]).read())).encode()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
