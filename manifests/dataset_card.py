"""The dataset card: ``README.md`` beside a dataset's manifest, so Hugging Face ``datasets`` reads it whole.

``load_dataset("webdataset", data_files=...)`` infers its columns from the first
five samples: a ``json`` key that first appears later is dropped, and one that
is null or an empty list in all five but set later fails the load. The card
declares the features of *every* sample, found while the shards are written
(:func:`sample_schema`, merged by :func:`unify`), in the YAML header that
``load_dataset(DATASET_DIR)`` reads, together with the shards as its data files.

Schemas are plain JSON-able values: a scalar type name (``null``, ``bool``,
``int64``, ``float64``, ``string``, ``binary``, ``image``), ``{"list": item}``,
``{"struct": {key: schema}}``, or ``mixed`` for a value whose type differs
between samples (such a key is left out of the declared features, and the card
says so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from manifests.samples import IMAGE_EXTENSIONS, IMAGES_FIELD
from manifests.shards import Sample

MIXED = "mixed"
_SCALARS = {bool: "bool", int: "int64", float: "float64", str: "string"}


def json_schema(value: Any) -> Any:
    """The schema of one JSON value (see the module docstring)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return {"struct": {key: json_schema(item) for key, item in value.items()}}
    if isinstance(value, list):
        item: Any = "null"
        for element in value:
            item = unify(item, json_schema(element))
        return {"list": item}
    return _SCALARS[type(value)]


def sample_schema(sample: Sample) -> dict[str, Any]:
    """The schema of one sample: per field, what Hugging Face's webdataset reader makes of it."""
    schema: dict[str, Any] = {}
    for name, data in sample.fields.items():
        extension = name.rsplit(".", 1)[-1].lower()
        if name == IMAGES_FIELD:
            schema[name] = {"list": "image"}
        elif extension in IMAGE_EXTENSIONS:
            schema[name] = "image"
        elif extension == "json":
            schema[name] = json_schema(json.loads(data))
        elif extension == "txt":
            schema[name] = "string"
        else:
            schema[name] = "binary"
    return {"struct": schema}


def unify(a: Any, b: Any) -> Any:
    """The schema that holds values of both ``a`` and ``b``: null and empty lists take the other's
    type, integers widen to floats, structs take the union of their keys; anything else is mixed."""
    if a == b:
        return a
    if a == "null":
        return b
    if b == "null":
        return a
    if sorted(map(str, (a, b))) == ["float64", "int64"]:
        return "float64"
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        (kind,) = a.keys()
        if kind == "list":
            return {"list": unify(a["list"], b["list"])}
        merged = dict(a["struct"])
        for key, schema in b["struct"].items():
            merged[key] = unify(merged[key], schema) if key in merged else schema
        return {"struct": merged}
    return MIXED


def hf_features(schema: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """A sample schema as Hugging Face's YAML feature list (``dataset_info.features``), plus the
    dotted names of the mixed-type keys it leaves out. ``__key__`` and ``__url__`` are added."""
    left_out: list[str] = []
    fields = _struct_entries(schema["struct"], "", left_out) if isinstance(schema, dict) else []
    fields += [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    return fields, left_out


def _entry(name: str, schema: Any, path: str, left_out: list[str]) -> dict[str, Any] | None:
    if schema == MIXED:
        left_out.append(path)
        return None
    if isinstance(schema, str):
        return {"name": name, "dtype": schema}
    if "list" in schema:
        item = _entry(name, schema["list"], path + "[]", left_out)
        if item is None:
            return None
        kind = next(key for key in item if key != "name")  # dtype, list or struct
        return {"name": name, "list": item[kind] if kind != "list" else {"list": item["list"]}}
    return {"name": name, "struct": _struct_entries(schema["struct"], path + ".", left_out)}


def _struct_entries(struct: Mapping[str, Any], prefix: str, left_out: list[str]) -> list[dict[str, Any]]:
    entries = (_entry(key, struct[key], prefix + key, left_out) for key in sorted(struct))
    return [entry for entry in entries if entry is not None]


def dataset_card(manifest: Mapping[str, Any], schema: Any) -> str:
    """``README.md`` for a dataset: the YAML header ``datasets`` reads, and a few lines for people."""
    features, left_out = hf_features(schema)
    header = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "shards/*.tar"}]}],
        "dataset_info": {"features": features, "splits": [
            {"name": "train", "num_examples": manifest["totals"]["samples"], "num_bytes": manifest["totals"]["bytes"]}
        ]},
    }
    totals = manifest["totals"]
    lines = [
        f"# {manifest['dataset']}",
        "",
        f"{totals['samples']} samples in {totals['shards']} webdataset shards ({totals['text_tokens']} text and "
        f"{totals['visual_tokens']} visual tokens), written by curation {manifest['package_version']}. "
        "`manifest.json` holds the config, the models, every shard's sha256 and the funnel.",
        "",
        "```python",
        "from datasets import load_dataset",
        "rows = load_dataset(\"path/to/this/folder\", split=\"train\")",
        "```",
    ]
    if left_out:
        lines += ["", "Left out of the declared features (their type differs between samples; read them from "
                  "the shards' `json` with the torch reader): " + ", ".join(f"`{name}`" for name in left_out) + "."]
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n" + "\n".join(lines) + "\n"
