"""The object tree of a checkpoint as tagged JSON (formats/fzpack-v1.md §5).

A checkpoint is any nesting of dicts, lists and tuples over tensors and the primitives that
``torch.load(weights_only=True)`` accepts. Tensors become ``{"$t": index}`` references into the
tensor table; everything else keeps its exact Python type and value (int vs float, tuple vs
list, OrderedDict and its ``_metadata``, non-string keys, NaN/inf, bytes, dtypes, sizes).
"""

from __future__ import annotations

import base64
import json
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from fzpack.errors import CheckpointError, FormatError

MAX_DEPTH = 64

# Tree codec 2 compresses the JSON with zstd using this fixed raw-content dictionary
# (formats/fzpack-v1.md section 5.1): the skeleton of a convention checkpoint, so the typical
# tree costs a few dozen bytes instead of ~200. Changing these bytes changes the format.
TREE_DICTIONARY = (
    b'"snip","random-mask","dense","lcresnet","dctps","freezenet-wd","freezenet-reinit","lenet-300-100","vgg16-d",'
    b'"resnet20","resnet34-tiny","cifar10","cifar100","mnist","synthetic","$o":1,"$meta":{"":{"version":1}}'
    b'{"state_dict":{"$sd":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]},'
    b'"fzpack":{"convention":1,"generator":"fzpack-philox4x64-10/v1","seed":0,"method":"freezenet",'
    b'"tensors":{"$fzt":[0,2,4,6,8,10,12,14,16,18,20]},"banks":{},'
    b'"arch":{"name":"lenet5-caffe","config":{"num_classes":10,"in_channels":1,"input_size":28}},'
    b'"metadata":{"dataset":"fashion-mnist","data_seed":0,"test_accuracy":0.0,"val_accuracy":0.0,'
    b'"best_epoch":0,"epochs_run":0,"steps":0}}}'
)
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class TreeEncoder:
    """Turns an object tree into tagged JSON, registering tensors through ``add_tensor``.

    Args:
        add_tensor: called as ``add_tensor(tensor, suggested_name)``, returns the tensor's table
            index and the unique name the table gave it.
        special: JSON to emit instead of walking certain objects, keyed by ``id(obj)``.
    """

    def __init__(self, add_tensor: Callable[[torch.Tensor, str], tuple[int, str]], special: dict[int, Any] | None = None) -> None:
        self._add = add_tensor
        self._special = special or {}

    def encode(self, obj: Any) -> bytes:
        return json.dumps(self._walk(obj, "", 0), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def _walk(self, obj: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CheckpointError(f"checkpoint nests deeper than {MAX_DEPTH} levels at {path or '/'}")
        if id(obj) in self._special:
            return self._special[id(obj)]
        if isinstance(obj, torch.Tensor):
            return {"$t": self._add(obj, path)[0]}
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            if math.isfinite(obj):
                return float(obj)
            return {"$f": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
        if isinstance(obj, dict):
            return self._dict(obj, path, depth)
        if isinstance(obj, torch.Size):
            return {"$size": list(obj)}
        if isinstance(obj, list):
            return [self._walk(v, f"{path}/{i}", depth + 1) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"$tuple": [self._walk(v, f"{path}/{i}", depth + 1) for i, v in enumerate(obj)]}
        if isinstance(obj, (bytes, bytearray)):
            return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii"), **({"$ba": 1} if isinstance(obj, bytearray) else {})}
        if isinstance(obj, torch.dtype):
            return {"$dtype": str(obj).removeprefix("torch.")}
        if isinstance(obj, torch.device):
            return {"$device": str(obj)}
        raise CheckpointError(f"unsupported object of type {type(obj).__name__} at {path or '/'}")

    def _dict(self, obj: dict, path: str, depth: int) -> Any:
        ordered = type(obj) is OrderedDict
        extra: dict[str, Any] = {}
        if ordered:
            extra["$o"] = 1
        meta = getattr(obj, "_metadata", None)
        if meta is not None:
            extra["$meta"] = self._walk(meta, f"{path}/_metadata", depth + 1)
        if type(obj) not in (dict, OrderedDict):
            raise CheckpointError(f"unsupported mapping type {type(obj).__name__} at {path or '/'}")
        str_keys = all(isinstance(k, str) for k in obj)
        if obj and str_keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            # A state dict: tensor names are its keys, so a key is stored only where it differs.
            refs: list[Any] = []
            for k, v in obj.items():
                i, name = self._add(v, k)
                refs.append(i if name == k else [k, i])
            return {"$sd": refs, **extra}
        if str_keys and not extra and not any(k.startswith("$") for k in obj):
            return {k: self._walk(v, f"{path}/{k}", depth + 1) for k, v in obj.items()}
        items = [[self._walk(k, f"{path}/<key>", depth + 1), self._walk(v, f"{path}/{k}", depth + 1)] for k, v in obj.items()]
        return {"$d": items, **extra}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"tree: duplicate JSON key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> None:
    raise FormatError(f"tree: non-standard JSON constant {name}")


class TreeDecoder:
    """Rebuilds the object tree from tagged JSON.

    Args:
        tensor: returns the tensor for a table index.
        name: returns the table name of a tensor index (a state dict's key by default).
        special: handlers for extra tags, e.g. ``{"$fzt": fn}``.
    """

    def __init__(self, tensor: Callable[[int], torch.Tensor], name: Callable[[int], str], special: dict[str, Callable[[Any], Any]] | None = None) -> None:
        self._tensor = tensor
        self._name = name
        self._special = special or {}

    def decode(self, data: bytes) -> Any:
        try:
            doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
            if isinstance(e, FormatError):
                raise
            raise FormatError(f"tree is not valid JSON: {str(e)[:120]}") from e
        return self._build(doc, 0)

    def _build(self, doc: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise FormatError(f"tree nests deeper than {MAX_DEPTH} levels")
        if isinstance(doc, list):
            return [self._build(v, depth + 1) for v in doc]
        if not isinstance(doc, dict):
            return doc
        tags = [k for k in doc if k.startswith("$")]
        if not tags:
            return {k: self._build(v, depth + 1) for k, v in doc.items()}
        try:
            return self._tagged(doc, depth)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise FormatError(f"tree: malformed tagged object {sorted(doc)[:3]}: {e}") from e

    def _tagged(self, doc: dict, depth: int) -> Any:
        for tag, fn in self._special.items():
            if tag in doc:
                return fn(doc[tag])
        if "$t" in doc:
            return self._tensor(_index(doc["$t"]))
        if "$f" in doc:
            return _FLOATS[doc["$f"]]
        if "$tuple" in doc:
            return tuple(self._build(v, depth + 1) for v in _list(doc["$tuple"]))
        if "$size" in doc:
            return torch.Size([_index(v) for v in _list(doc["$size"])])
        if "$bytes" in doc:
            b = base64.b64decode(doc["$bytes"], validate=True)
            return bytearray(b) if doc.get("$ba") else b
        if "$dtype" in doc:
            dt = getattr(torch, doc["$dtype"], None)
            if not isinstance(dt, torch.dtype):
                raise ValueError(f"unknown dtype {doc['$dtype']!r}")
            return dt
        if "$device" in doc:
            return _device(doc["$device"])
        if "$sd" in doc:
            items = [self._sd_item(ref) for ref in _list(doc["$sd"])]
        elif "$d" in doc:
            items = [(_hashable(self._build(k, depth + 1)), self._build(v, depth + 1)) for k, v in _list(doc["$d"])]
        else:
            raise ValueError(f"unknown tag in {sorted(doc)[:3]}")
        out: dict = OrderedDict(items) if doc.get("$o") else dict(items)
        if len(out) != len(items):
            raise ValueError("duplicate keys")
        if "$meta" in doc:
            out._metadata = self._build(doc["$meta"], depth + 1)  # type: ignore[attr-defined]
        return out


    def _sd_item(self, ref: Any) -> tuple[str, torch.Tensor]:
        if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str):
            return ref[0], self._tensor(_index(ref[1]))
        i = _index(ref)
        return self._name(i), self._tensor(i)


def _index(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"expected a non-negative integer, got {v!r}")
    return v


def _list(v: Any) -> list:
    if not isinstance(v, list):
        raise ValueError(f"expected a list, got {type(v).__name__}")
    return v


def _device(spec: Any) -> torch.device:
    try:
        return torch.device(spec)
    except RuntimeError as e:  # torch's error type for a malformed device string ("", "foo", "cpu:-5")
        raise ValueError(str(e).splitlines()[0][:120]) from None


def _hashable(k: Any) -> Any:
    hash(k)
    return k
