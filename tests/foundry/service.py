"""foundry-local-sdk's own web service, nothing preloaded: run with the Python that has the SDK.

    python tests/foundry/service.py CATALOG_URL CACHE_DIR WORK_DIR   # prints "READY http://127.0.0.1:PORT"
"""

import sys
import time

from foundry_local_sdk import Configuration, FoundryLocalManager

catalog, cache, work = sys.argv[1:4]
manager = FoundryLocalManager(Configuration(
    app_name="bench-test", app_data_dir=f"{work}/app", model_cache_dir=cache, logs_dir=f"{work}/logs",
    web=Configuration.WebService(urls="http://127.0.0.1:0"), catalog_urls=[(catalog, None)]))
manager.start_web_service()
print("READY", manager.urls[0], flush=True)
while True:
    time.sleep(3600)
