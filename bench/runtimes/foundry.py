"""Microsoft Foundry Local's web service (foundry-local-sdk 2.x, or the Foundry Local app).

What its service answers (checked against foundry-local-sdk 2.2.1's own web service, serving
SmolLM2 offline from a local catalog):

* ``GET /status`` -> ``{"endpoints": [...], "modelCachePath": "...", "pid": N}``: how bench
  recognises it, where its models are on disk, and which process serves them;
* ``GET /v1/models`` lists the model ids it can serve (``smollm2-135m-instruct-generic-cpu:1``,
  ``owned_by`` = publisher); ``GET /v1/models/<id>`` describes one; aliases are not accepted there
  nor in chat requests (404 "Model not found");
* ``GET /models/loaded`` -> loaded ids; ``GET /models/load/<alias or id>`` -> ``{"status":
  "loaded"}``; a chat request naming an id that is not loaded fails with 400 "must be loaded
  before inference", so bench loads it first and times that.

Its port is chosen at start: never assume 5272/5273. Its web service reports no version and no
license. bench takes the version from the SDK it started, or from the SDK library the local
service's process has loaded; the license from the SDK's catalog when bench started the service.
Otherwise both are recorded as unknown, with the reason, never guessed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

import psutil

from bench.errors import BenchError, ConfigError
from bench.runtimes.base import MemoryReading, NotDownloaded, OwnServer, Runtime, watch_process
from bench.runtimes.builtin import RuntimeMissing
from bench.runtimes.http import Connection, HTTPFailure
from bench.util.bounded import excerpt

LOAD_TIMEOUT_S = 1800.0  # loading a multi-GB model from disk can take minutes
MAX_FACT_CHARS = 200
MAX_MAPS = 5_000  # mapped files of the service's process looked at
MAX_SCAN_DIRS = 2_000  # model folders looked at under the cache
MAX_DISK_FILES = 10_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
NOT_REPORTED = "not reported by Foundry Local's web service"


START_OPTIONS = ("catalog_url", "model_cache_dir")
def sdk_hint(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str:
    """Why bench cannot start Foundry Local here, and what to do instead."""
    fallback = "or start Foundry Local yourself and pass its URL with --endpoint"
    if version < (3, 11):
        return (f"no Foundry Local service is running, and foundry-local-sdk (which bench would start it with) "
                f"needs Python 3.11+, this is Python {'.'.join(map(str, version))}: run bench from a Python 3.11+ "
                f"virtual environment with pip install -e '.[foundry]', {fallback}")
    return (f"no Foundry Local service is running, and foundry-local-sdk is not installed to start one: "
            f"pip install -e '.[foundry]', {fallback}")


class FoundryLocal(Runtime):
    name = "foundry"
    label = "Foundry Local"
    finds_own_server = True

    @classmethod
    def own_server(cls, options: dict[str, str]) -> OwnServer:
        """A Foundry Local service already listening on this machine, or one started through
        foundry-local-sdk (its web service, on a port it picks), stopped when bench is done.
        ``options``: catalog_url (a catalog API other than Azure's), model_cache_dir."""
        unknown = sorted(set(options) - set(START_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown Foundry Local option(s) {', '.join(unknown)}; known: {', '.join(START_OPTIONS)}")
        found = None if options else find_service()  # options describe a service to start
        if found:
            return OwnServer(found, f"found running at {found}")
        try:
            from foundry_local_sdk import Configuration, FoundryLocalManager
        except ImportError:
            raise RuntimeMissing(sdk_hint()) from None
        config = Configuration(app_name="bench", web=Configuration.WebService(urls="http://127.0.0.1:0"),
                               model_cache_dir=options.get("model_cache_dir"),
                               catalog_urls=[(options["catalog_url"], None)] if options.get("catalog_url") else None)
        manager = FoundryLocalManager.instance or FoundryLocalManager(config)
        manager.start_web_service()
        url = manager.urls[0].rstrip("/") + "/v1"
        version = None
        with contextlib.suppress(Exception):  # noqa: BLE001 - a version is a nicety
            version = f"foundry-local-sdk {metadata.version('foundry-local-sdk')}"
        return OwnServer(url, f"started by bench through foundry-local-sdk at {url}", manager.stop_web_service,
                         version=version, handle=manager)

    def __init__(self, conn: Connection | None):
        super().__init__(conn)
        self._status: dict[str, Any] | None = None
        self._aliases: dict[str, str] = {}  # served id -> the alias it was resolved from
        self._resolved: dict[str, str | None] = {}  # alias -> served id (None: not served)
        self._load_s: dict[str, float] = {}  # id -> seconds its load took while resolving its alias
        self._missing: set[str] = set()  # aliases the service knows but has not downloaded

    @classmethod
    def detect(cls, conn: Connection) -> bool:
        data = conn.get("/status", root=True, timeout_s=5).data
        return isinstance(data, dict) and isinstance(data.get("modelCachePath"), str) and "endpoints" in data

    # -- what the service says about itself
    def version(self) -> str | None:
        """Not reported by the web service: the SDK version bench started, or the version of the
        foundry-local-sdk the local service's process has loaded (its library's install folder)."""
        if self.own is not None and self.own.version:
            return self.own.version
        pid = self._pid()
        if pid is None:
            return None
        try:
            paths = [m.path for m in psutil.Process(pid).memory_maps(grouped=True)][:MAX_MAPS]
        except (psutil.Error, OSError):
            return None
        return sdk_version_from_paths(paths)

    def status(self) -> dict[str, Any]:
        if self._status is None and self.conn is not None:
            try:
                data = self.conn.get("/status", root=True, timeout_s=5).data
            except HTTPFailure:
                data = None
            self._status = data if isinstance(data, dict) else {}
        return self._status or {}

    def _local(self) -> bool:
        return self.conn is not None and urlsplit(self.conn.base_url).hostname in LOOPBACK

    def _pid(self) -> int | None:
        """The serving process when it runs on this machine and is alive."""
        pid = self.status().get("pid")
        if self._local() and isinstance(pid, int) and not isinstance(pid, bool) and psutil.pid_exists(pid):
            return pid
        return None

    # -- models
    def served_id(self, name: str, listed: list[str]) -> str | None:
        """An id as it is, or an alias resolved to the id the service serves for it:
        1. the SDK's catalog, when bench started the service (the variant it picks for the device);
        2. the one listed id that is the alias plus a variant tag (``smollm2-…`` + ``-generic-cpu:1``);
           with several such variants, the one loaded; else None (never guessed);
        3. otherwise the service itself: it loads by alias (timed; ensure_loaded reports that time),
           and the id that appears among the loaded ones is it. Foundry's ids do not always start
           with the alias (``phi-4-mini`` serves ``Phi-4-mini-instruct-…``, and ``phi-4-mini-…``
           must not be taken for ``phi-4``), so anything looser than 2 would be a guess."""
        if name in listed or (not listed and ":" in name):
            return name
        if name not in self._resolved:
            self._resolved[name] = self._resolve(name, listed)
        return self._resolved[name]

    def _resolve(self, name: str, listed: list[str]) -> str | None:
        variant = self._catalog_variant(name)
        if variant in listed:
            return self._alias(variant, name)
        tagged = [i for i in listed if _is_variant_of(i, name)]
        if len(tagged) > 1:
            loaded = [v for v in tagged if v in self.loaded()]
            return self._alias(loaded[0], name) if len(loaded) == 1 else None
        if tagged:
            return self._alias(tagged[0], name)
        return self._resolve_by_loading(name)

    def _resolve_by_loading(self, name: str) -> str | None:
        if self.conn is None:
            return None
        before = set(self.loaded())
        t0 = time.perf_counter()
        answer = self._load(name)
        elapsed = time.perf_counter() - t0
        if answer.status != 200:
            if _not_cached(answer.data):
                self._missing.add(name)
                return name  # ensure_loaded says it is not downloaded
            return None  # the service does not know the alias
        new = [i for i in self.loaded() if i not in before]
        if len(new) != 1:
            return None  # already loaded, or several: which id serves it cannot be told
        self._load_s[new[0]] = elapsed
        return self._alias(new[0], name)

    def _alias(self, model_id: str, name: str) -> str:
        self._aliases[model_id] = name
        return model_id

    def _catalog_variant(self, alias: str) -> str | None:
        """The variant the SDK's catalog picks for an alias on this device."""
        if self._sdk is None:
            return None
        try:
            variant = self._sdk.catalog.get_model(alias).id
        except Exception:  # noqa: BLE001 - unknown alias, or a catalog that fails: resolved otherwise
            return None
        return variant if isinstance(variant, str) else None

    def loaded(self) -> list[str]:
        try:
            data = self.conn.get("/models/loaded", root=True, timeout_s=10).data if self.conn else None
        except HTTPFailure:
            return []
        return [x[:MAX_FACT_CHARS] for x in (data if isinstance(data, list) else [])[:1000] if isinstance(x, str)]

    def ensure_loaded(self, model_id: str) -> float | None:
        """Load the model unless it is loaded; the seconds the load took (None: it already was).
        foundry-local-sdk 2.2.1 loads by alias only (an id answers 404), so an id bench resolved
        from an alias is loaded under that alias, and must then be the one loaded."""
        if model_id in self._missing:
            raise self._not_downloaded(model_id, model_id)
        if model_id in self._load_s:
            return self._load_s.pop(model_id)
        if self.conn is None or model_id in self.loaded():
            return None
        t0 = time.perf_counter()
        answer = self._load(model_id)
        alias = self._aliases.get(model_id)
        if answer.status == 404 and alias:
            answer = self._load(alias)
        elapsed = time.perf_counter() - t0
        if answer.status != 200:
            if _not_cached(answer.data):
                raise self._not_downloaded(model_id, alias or model_id)
            raise BenchError(f"Foundry Local answered HTTP {answer.status}: {excerpt(_message(answer.data))}")
        loaded = self.loaded()
        if model_id not in loaded:
            raise BenchError(f"Foundry Local loaded {', '.join(loaded) or 'nothing'} for '{alias or model_id}', "
                             f"not {model_id}")
        return elapsed

    def _not_downloaded(self, model_id: str, name: str) -> NotDownloaded:
        """A model the service lists but has not downloaded: its size from the SDK's catalog when
        bench started the service; downloadable by bench only into a service bench started."""
        size_mb = self._catalog(model_id).get("catalog_size_mb")
        size = size_mb * 1_048_576 if isinstance(size_mb, int) and size_mb > 0 else None
        ours = self._sdk is not None
        how = (f"foundry model download {name}" if ours else
               f"download it with Foundry Local (foundry model download {name}; `foundry model list` shows its "
               "size), then run again (bench downloads only into a Foundry Local it started)")
        return NotDownloaded(name, size, "Foundry Local's catalog" if size else "Foundry Local's web service", ours, how)

    def download(self, model_id: str, progress: Any) -> None:
        if self._sdk is None:
            raise self._not_downloaded(model_id, self._aliases.get(model_id, model_id))
        _sdk_download(self._sdk, model_id, progress)

    @property
    def _sdk(self) -> Any:
        """foundry-local-sdk's manager, when bench started the service through it."""
        return self.own.handle if self.own is not None else None

    def _catalog(self, model_id: str) -> dict[str, Any]:
        """What the SDK's catalog says (only for a service bench started through the SDK)."""
        if self._sdk is None:
            return {}
        try:
            return _sdk_facts(self._sdk, model_id)
        except Exception:  # noqa: BLE001 - a catalog fact is a nicety, never a failure
            return {}

    def _load(self, name: str) -> Any:
        try:
            return self.conn.get(f"/models/load/{quote(name, safe=':')}", root=True, timeout_s=LOAD_TIMEOUT_S,
                                 ok_only=False)
        except HTTPFailure as e:
            raise BenchError(f"Foundry Local did not load it ({e})") from None

    # -- facts
    def model_facts(self, model_id: str) -> dict[str, Any]:
        facts: dict[str, Any] = {"variant": model_id[:MAX_FACT_CHARS]}
        unknown = {"license": f"{NOT_REPORTED}: set license: for the model in bench.yaml"}
        if not self.version():
            unknown["runtime_version"] = NOT_REPORTED
        catalog = self._catalog(model_id)  # bench started it: the SDK's catalog knows more
        facts.update(catalog)
        sources = {k: "foundry-local-sdk's catalog" for k in catalog}
        sources["variant"] = "Foundry Local's /v1/models"
        if "license" in facts:
            unknown.pop("license")
        described = self._describe(model_id)
        if isinstance(described.get("owned_by"), str) and described["owned_by"]:
            facts["publisher"] = described["owned_by"][:MAX_FACT_CHARS]
            sources["publisher"] = "owned_by in Foundry Local's /v1/models/<id>"
        folder = self._model_folder(model_id)
        if folder is not None:
            facts["model_folder"] = str(folder)[:500]
            disk = _folder_bytes(folder)
            if disk:
                facts["disk_bytes"] = disk
                sources["disk_bytes"] = "the model's folder under Foundry Local's modelCachePath"
        else:
            unknown["disk_bytes"] = ("the service is not on this machine" if not self._local() else
                                     "no folder with this model id under the service's modelCachePath")
        facts["unknown"], facts["sources"] = unknown, sources
        return facts

    def _describe(self, model_id: str) -> dict[str, Any]:
        try:
            data = self.conn.get(f"/models/{quote(model_id, safe=':')}", timeout_s=10).data if self.conn else None
        except HTTPFailure:
            return {}
        return data if isinstance(data, dict) else {}

    def _model_folder(self, model_id: str) -> Path | None:
        """The cached model's folder: the one whose inference_model.json names this id (the
        service's own rule), under modelCachePath, when the service runs on this machine."""
        cache = self.status().get("modelCachePath")
        if not self._local() or not isinstance(cache, str) or not cache:
            return None
        seen = 0
        for dirpath, dirnames, filenames in os.walk(cache):
            seen += 1
            if seen > MAX_SCAN_DIRS:
                return None
            if "inference_model.json" in filenames:
                dirnames.clear()  # a model folder is a leaf
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    name = json.loads((Path(dirpath) / "inference_model.json").read_text()[:65536]).get("Name")
                    if name == model_id or f"{name}:0" == model_id:
                        return Path(dirpath)
        return None

    @contextlib.contextmanager
    def watch_memory(self) -> Iterator[MemoryReading | None]:
        pid = self._pid()
        if pid is None:
            yield None
            return
        with watch_process(pid, f"Foundry Local's process tree (pid {pid}, from its /status); "
                                "it may hold other models too") as reading:
            yield reading

    def died(self) -> str | None:
        pid = self.status().get("pid")
        if self._local() and isinstance(pid, int) and not psutil.pid_exists(pid):
            return f"Foundry Local's service (pid {pid}) behind {self.conn.shown} exited"
        return self.stopped_answering()


def _sdk_facts(manager: Any, model_id: str) -> dict[str, Any]:
    """What foundry-local-sdk's catalog says about a model variant (the service bench started)."""
    model = manager.catalog.get_model_variant(model_id)
    info = model.info if model is not None else None
    if info is None:
        return {}
    facts: dict[str, Any] = {}
    for key, value in (("license", info.license), ("license_description", info.license_description),
                       ("catalog_size_mb", info.file_size_mb), ("publisher", info.publisher),
                       ("execution_provider", getattr(info.runtime, "execution_provider", None)),
                       ("device", str(getattr(info.runtime, "device_type", "") or "") or None)):
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            facts[key] = value[:MAX_FACT_CHARS] if isinstance(value, str) else value
    return facts


def sdk_version_from_paths(paths: list[str]) -> str | None:
    """"foundry-local-sdk X.Y.Z" from the files a process has mapped: the SDK's native library
    lives in site-packages/foundry_local_sdk/, beside the foundry_local_sdk-X.Y.Z.dist-info folder."""
    for path in paths:
        head, sep, _ = path.partition("/foundry_local_sdk/")
        if not sep:
            continue
        with contextlib.suppress(OSError):
            for info in sorted(Path(head).glob("foundry_local_sdk-*.dist-info"))[:1]:
                version = info.name[len("foundry_local_sdk-"):-len(".dist-info")]
                if re.fullmatch(r"[0-9][0-9A-Za-z.+-]{0,40}", version):
                    return f"foundry-local-sdk {version}"
    return None


def _sdk_download(manager: Any, model_id: str, progress: Any) -> None:
    """Download a model variant into the cache of the service bench started (SDK in-process)."""
    model = manager.catalog.get_model_variant(model_id)
    if model is None:
        raise BenchError(f"{model_id} is not in Foundry Local's catalog, so it cannot be downloaded")
    try:
        model.download(progress_callback=progress)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - the SDK raises its own kinds; the user gets one line
        raise BenchError(f"Foundry Local could not download {model_id}: {excerpt(_native_message(str(e)))}") from None


def _native_message(text: str) -> str:
    """The SDK's native error without its C++ source location and function signature."""
    return re.sub(r"^[\w./-]+\.(?:cc|cpp|h|hpp):\d+\s+(?:[^()]*\([^()]*\)\s+)?", "", text)


def _is_status(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("modelCachePath"), str) and "endpoints" in data


def find_service(timeout_s: float = 0.5) -> str | None:
    """The base URL of a Foundry Local service listening on this machine's loopback, if any: each
    listening loopback port is asked GET /status (its port is chosen at start, so it is searched)."""
    try:
        ports = sorted({c.laddr.port for c in psutil.net_connections(kind="inet")
                        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip in ("127.0.0.1", "0.0.0.0", "::1", "::")})
    except (psutil.Error, OSError):
        return None
    for port in ports[:200]:
        with contextlib.suppress(OSError, ValueError):
            with urlopen(Request(f"http://127.0.0.1:{port}/status"), timeout=timeout_s) as resp:  # noqa: S310
                if resp.status == 200 and _is_status(resp.read(65536)):
                    return f"http://127.0.0.1:{port}/v1"
    return None


VARIANT_TAG = re.compile(r"-[a-z0-9]+-(?:cpu|gpu|npu)", re.IGNORECASE)  # generic-cpu, cuda-gpu, qnn-npu, ...


def _is_variant_of(model_id: str, alias: str) -> bool:
    """``<alias>-<variant tag>:<version>`` (case as the catalog spells it)."""
    base = model_id.split(":")[0]
    return base[:len(alias)].lower() == alias.lower() and VARIANT_TAG.fullmatch(base[len(alias):]) is not None


def _not_cached(data: Any) -> bool:
    message = str(_message(data)).lower()
    return "not cached" in message or "must be downloaded" in message


def _message(data: Any) -> Any:
    """The message of an OpenAI-style error body, or the body."""
    error = data.get("error") if isinstance(data, dict) else None
    return error.get("message", error) if isinstance(error, dict) else data


def _folder_bytes(folder: Path) -> int | None:
    total, seen = 0, 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            seen += 1
            if seen > MAX_DISK_FILES:
                return None
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / f).stat().st_size
    return total or None
