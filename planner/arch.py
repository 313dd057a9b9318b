"""Hugging Face style model configs → one normalized :class:`ArchSpec`: the catalog and loading.

A model reaches the planner as a catalog id (``profiles/models/<id>.json``) or as a path to
any local HF-style ``config.json`` / YAML file. :mod:`planner.hfconfig` has one reader per
supported ``model_type`` (that family's field names and architectural defaults), so the rest
of the planner sees one shape vocabulary; :mod:`planner.archspec` defines that vocabulary.

Parameter counts are exact for the modules the Hugging Face implementation builds (or, for
PaLM, the paper describes): every weight, bias, norm scale, expert and router, plus the LM
head when it is not tied to the input embedding. They are checked against published totals
in ``tests/test_arch.py``.

Files are parsed with ``json.load`` or :func:`hwmodels.safeyaml.load_untrusted` only (no tags,
no anchors or aliases, bounded size and nesting).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from hwmodels import UnknownIdError
from hwmodels.errors import SUGGEST_MAX_LEN, TierwiseError, Worded
from hwmodels.ids import ID_EXPECTED, id_from_name, is_id
from hwmodels.loader import exists, is_dir, is_file
from hwmodels.safeyaml import UnsafeYamlError, load_untrusted
from planner.fileio import DuplicateKeyError, NumberTooLongError, parse_document
from planner.archspec import CNN_INPUT_SIZE, FAMILIES, ArchSpec, ConvLayer, ModelConfigError
from planner.hfconfig import SUPPORTED_MODEL_TYPES, arch_from_config

__all__ = [
    "CNN_INPUT_SIZE",
    "ArchSpec",
    "ConvLayer",
    "FAMILIES",
    "ModelConfigError",
    "SUPPORTED_MODEL_TYPES",
    "UnknownIdError",
    "arch_from_config",
    "list_models",
    "load_arch",
    "load_config_dict",
    "model_config_path",
]

# ---------------------------------------------------------------------------
# Catalog and files
# ---------------------------------------------------------------------------

_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def _models_dir() -> Traversable:
    return resources.files("profiles") / "models"


def list_models() -> list[str]:
    """Catalog ids (file stems of ``profiles/models/*.json``), sorted."""
    return sorted(
        p.name.rsplit(".", 1)[0]
        for p in _models_dir().iterdir()
        if p.is_file() and p.name.endswith(_CONFIG_SUFFIXES)
    )


def _unknown(model_id: str) -> UnknownIdError:
    known = list_models()
    close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.5) if len(model_id) <= SUGGEST_MAX_LEN else []
    return UnknownIdError(model_id, "model", close, known=known)


def model_config_path(id: str) -> Traversable:
    """The packaged config file of catalog model ``id``."""
    if not isinstance(id, str) or not id or "/" in id or "\\" in id:
        raise _unknown(str(id))
    base = _models_dir()
    for suffix in _CONFIG_SUFFIXES:
        p = base / f"{id}{suffix}"
        if is_file(p):
            return p
    raise _unknown(id)


def _looks_like_path(s: str) -> bool:
    """A file or folder path rather than a catalog id (ids are bare names like ``llama-3.1-8b``); a bare
    name that is no catalog id but a model folder here (``--model hf`` beside ``./hf/config.json``) is the
    folder, as ``hf/`` is."""
    if s.endswith(_CONFIG_SUFFIXES) or os.sep in s or "/" in s or s.startswith((".", "~")):
        return True
    return os.path.isfile(os.path.join(s, "config.json")) and s not in list_models()


def _parse_text(text: str, name: str, origin: str) -> dict[str, Any]:
    try:
        if name.endswith(".json"):
            data = parse_document(text, "json")  # json.loads refusing a key given twice
        else:
            data = load_untrusted(text, field="yaml")
    except DuplicateKeyError as e:
        raise ModelConfigError(origin, None, "expected each key given once in an object", e.repeated) from None
    except NumberTooLongError as e:
        raise ModelConfigError(origin, e.path, "a number of at most 4300 digits", Worded(f"a number of {e.digits} digits")) from None
    except json.JSONDecodeError as e:
        raise ModelConfigError(origin, None, "expected valid JSON", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ModelConfigError(origin, None, "expected JSON nested at most a few hundred levels", "deeper nesting") from None
    except UnsafeYamlError as e:
        if e.repeated is not None:
            raise ModelConfigError(origin, None, "expected each key given once in a mapping", e.repeated) from None
        raise ModelConfigError(origin, None, "expected plain YAML (no tags, no anchors or aliases, bounded size and nesting)",
                               e.reason) from None
    if not isinstance(data, dict):
        raise ModelConfigError(origin, None, "expected a mapping of config fields at the top level", type(data).__name__)
    return data


def _read_catalog(id: str) -> tuple[dict[str, Any], str]:
    p = model_config_path(id)
    return _parse_text(p.read_text(encoding="utf-8"), p.name, p.name), p.name


def _read_file(path_str: str) -> tuple[dict[str, Any], str]:
    path = Path(path_str).expanduser()
    if is_dir(path) and is_file(path / "config.json"):
        # A downloaded Hugging Face snapshot folder: its config.json describes the model.
        path = path / "config.json"
        path_str = str(path)
    if is_dir(path):
        raise ModelConfigError(path_str, None, "expected a catalog model id, a config file (.json, .yaml or .yml) or a "
                               "folder holding config.json (a downloaded Hugging Face model)",
                               "a directory without config.json")
    if not is_file(path):
        raise ModelConfigError(path_str, None, "expected an existing config file (.json, .yaml or .yml)",
                               "not a regular file" if exists(path) else "no such file")
    if not path.name.endswith(_CONFIG_SUFFIXES):
        raise ModelConfigError(path_str, None, "expected a .json, .yaml or .yml config file", path.suffix or "no suffix")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelConfigError(path_str, None, "expected a readable UTF-8 text file", str(e)) from None
    return _parse_text(text, path.name, path_str), path_str


def _file_model_id(cfg: Mapping[str, Any], path_str: str) -> str:
    """``_id`` when the file names itself (an id by hwmodels.ids' rule, or the file is refused naming
    ``_id``), else an id made of the file stem (the folder name for config.json)."""
    if "_id" in cfg and cfg["_id"] not in (None, ""):
        if not is_id(cfg["_id"]):
            raise ModelConfigError(path_str, "_id", ID_EXPECTED, cfg["_id"])
        return cfg["_id"]
    path = Path(path_str.rstrip("/\\")).expanduser()
    if path.is_dir() or path.name == "config.json":
        folder = path if path.is_dir() else path.parent
        return id_from_name(folder.resolve().name or path.name)
    return id_from_name(path.name.rsplit(".", 1)[0])


def _read(id_or_path: str) -> tuple[dict[str, Any], str, str, bool]:
    """(config, origin, model id, from catalog)."""
    if not isinstance(id_or_path, str) or not id_or_path.strip():
        raise TierwiseError(f"{{@model}} must be a catalog model id or a config file path; got {id_or_path!r}",
                            field="model", code="invalid_field")
    if _looks_like_path(id_or_path):
        cfg, origin = _read_file(id_or_path)
        return cfg, origin, _file_model_id(cfg, id_or_path), False
    cfg, origin = _read_catalog(id_or_path)
    return cfg, origin, id_or_path, True


def load_config_dict(id_or_path: str) -> dict[str, Any]:
    """The raw config mapping of a catalog id or a local JSON/YAML file (a fresh copy)."""
    cfg, _, _, _ = _read(id_or_path)
    return cfg


@functools.lru_cache(maxsize=256)
def _catalog_arch(id: str) -> ArchSpec:
    cfg, origin = _read_catalog(id)
    return arch_from_config(cfg, model_id=id, origin=origin)


def load_arch(id_or_path: str) -> ArchSpec:
    """An :class:`ArchSpec` from a catalog id or a path to an HF-style config (JSON or YAML)."""
    if isinstance(id_or_path, str) and id_or_path.strip() and not _looks_like_path(id_or_path):
        return _catalog_arch(id_or_path)
    cfg, origin, model_id, _ = _read(id_or_path)
    return arch_from_config(cfg, model_id=model_id, origin=origin)
