"""Architectures by name: ``timm:NAME``, ``torchvision:NAME`` and ``hf:TYPE[:HEAD]`` (a
transformers model type, a ``config.json`` or a model directory), built from the library's own
configuration with random weights, and example inputs derived from that configuration.

Nothing is downloaded: timm gets ``pretrained=False``, torchvision ``weights=None``, and
transformers builds from a config object (``AutoConfig.for_model``) with the hub switched off
(``HF_HUB_OFFLINE``) before it is imported.  A library is imported only when its prefix is used.
``--set key=value`` overrides constructor arguments (timm, torchvision) or config fields
(transformers); ``--input-shape`` still wins over the inputs derived here.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from .load import InputSpec, LoadError, Loaded
from .user_errors import one_line

PREFIXES = ("timm", "torchvision", "hf")
BATCH, SEQUENCE = 2, 16


def is_named(text: str) -> bool:
    """``TARGET`` names an architecture (``timm:resnet50``) rather than a file or module."""
    prefix, colon, rest = text.partition(":")
    return bool(colon and rest) and prefix in PREFIXES


def parse_set(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as a Python literal (``2``, ``(32, 32)``, ``True``),
    else kept as a string (``act_layer=gelu``)."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key.isidentifier():
        raise ValueError(f"'{text}' is not key=value: write e.g. --set num_hidden_layers=2 "
                         "(values are Python literals: 2, 0.5, (32, 32), True; else a string)")
    try:
        return key, ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return key, raw.strip()


def load_named(text: str, sets: tuple[tuple[str, Any], ...] = (),
               spec: InputSpec | None = None, meta: bool = False) -> Loaded:
    """Build the named architecture with random weights and example inputs for it; with
    ``meta``, a transformers model is built on the meta device (no memory for its weights:
    only its static analysis is needed when a twin confirms its claims)."""
    prefix, _, name = text.partition(":")
    builder: Callable = {"timm": _timm, "torchvision": _torchvision, "hf": _hf}[prefix]
    if prefix == "hf":
        builder = functools.partial(_hf, meta=meta)
    model, inputs, inputs_from, call = builder(name.strip(), dict(sets))
    model.train()
    if spec is not None:
        inputs, inputs_from = spec.make(), "--input-shape"
    return Loaded(model, inputs, None, None, {"model": call, "inputs": inputs_from})


# --- the libraries -------------------------------------------------------------------------


def _library(name: str, package: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as exc:
        raise LoadError(f"'{name.split('.')[0]}:' needs {package}, which is not installed in the "
                        f"environment wdaudit runs in: pip install {package}.") from exc


def _unknown(kind: str, name: str, known, hint: str) -> LoadError:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.3)
    offer = f"Did you mean: {', '.join(close)}? " if close else ""
    return LoadError(f"{kind} has no architecture '{name}'. {offer}{hint}")


def _build(call: str, build: Callable) -> Any:
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - the library's constructor, given the user's --set
        raise LoadError(f"{call} raised {one_line(exc)}. Check the --set values against the "
                        "architecture's constructor arguments (--debug shows the traceback).") \
            from exc


def _call_text(function: str, name: str, kwargs: dict) -> str:
    rest = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return f"{function}({name!r}{rest})"


def _images(channels: int, size) -> tuple[torch.Tensor, str]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    shape = (BATCH, int(channels), int(h), int(w))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator), \
        f"images {'×'.join(map(str, shape))} from the architecture's configuration"


def _timm(name: str, sets: dict) -> tuple:
    timm = _library("timm", "timm")
    known = timm.list_models()
    if name.split(".")[0] not in known:  # "resnet50.a1_in1k" names a pretrained tag
        raise _unknown("timm", name, known, "`python -c \"import timm; "
                       "print(timm.list_models('*resnet*'))\"` lists them.")
    kwargs = {**sets, "pretrained": False}
    call = _call_text("timm.create_model", name, kwargs)
    model = _build(call, lambda: timm.create_model(name, **kwargs))
    config = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = config.get("input_size", (3, 224, 224))
    channels = sets.get("in_chans", channels)
    size = sets.get("img_size", (height, width))
    inputs, origin = _images(channels, size)
    return model, inputs, origin, call


def _torchvision(name: str, sets: dict) -> tuple:
    models = _library("torchvision.models", "torchvision")
    known = models.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known, "`python -c \"import torchvision; "
                       "print(torchvision.models.list_models())\"` lists them.")
    kwargs = {**sets, "weights": None}
    call = _call_text("torchvision.models.get_model", name, kwargs)
    model = _build(call, lambda: models.get_model(name, **kwargs))
    size = sets.get("image_size", _torchvision_crop(models, name))
    inputs, origin = _images(3, size)
    return model, inputs, origin, call


def _torchvision_crop(models, name: str) -> int:
    """The crop size the architecture's default weights were trained at (224 when none):
    read from the weights' metadata, which needs no download."""
    try:
        transforms = models.get_model_weights(name).DEFAULT.transforms()
        crop = getattr(transforms, "crop_size", [224])
        return int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    except (ValueError, KeyError, AttributeError, TypeError, IndexError):
        return 224  # no weights registered, or transforms without one crop size: the default


# --- transformers --------------------------------------------------------------------------


def _hf(name: str, sets: dict, meta: bool = False) -> tuple:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = _library("transformers", "transformers")
    source, _, head = _split_head(name)
    config, described = _hf_config(transformers, source)
    for key, value in sets.items():
        if not hasattr(config, key):
            fields = list(config.to_dict()) + list(getattr(config, "attribute_map", {}))
            raise LoadError(_unknown_field(config, key, fields))
        setattr(config, key, value)
    auto_name = "AutoModel" if not head else \
        (head if head.startswith("AutoModel") else f"AutoModelFor{head}")
    auto = getattr(transformers, auto_name, None)
    if auto is None:
        heads = [n.removeprefix("AutoModelFor") for n in dir(transformers)
                 if n.startswith("AutoModelFor")]
        raise _unknown("transformers", head, heads, "HEAD is the part after AutoModelFor, "
                       "e.g. hf:gpt2:CausalLM or hf:bert:SequenceClassification.")
    call = f"transformers.{auto_name}.from_config({described}" + \
        "".join(f", {k}={v!r}" for k, v in sets.items()) + ")"
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = _build(call, lambda: auto.from_config(config))
    inputs, origin = _hf_inputs(config, model)
    return model, inputs, origin, call


def _unknown_field(config, key: str, fields: list) -> str:
    close = difflib.get_close_matches(key, fields, n=5, cutoff=0.3)
    offer = f"Did you mean: {', '.join(close)}? " if close else ""
    return (f"the {config.model_type} configuration has no field '{key}'. {offer}--set names a "
            "field of the model's configuration (transformers' "
            f"{type(config).__name__}).")


def _split_head(name: str) -> tuple[str, str, str]:
    """``gpt2:CausalLM`` → model type and head; a path keeps its colons (``C:\\m\\config.json``)."""
    source, colon, head = name.rpartition(":")
    if colon and source and head.isidentifier():
        return source, colon, head
    return name, "", ""


def _hf_config(transformers, source: str):
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        try:
            values = json.loads(path.read_text())
            config_class = transformers.CONFIG_MAPPING[values["model_type"]]
        except (OSError, ValueError, KeyError) as exc:
            raise LoadError(f"{source}: cannot read a transformers configuration from {path} "
                            f"({one_line(exc)}). Give a model type (hf:bert), a config.json "
                            "with a model_type, or a directory holding one.") from exc
        return config_class.from_dict(values), f"{str(path)!r}"
    known = list(transformers.CONFIG_MAPPING.keys())
    if source not in known:
        raise _unknown("transformers", source, known, "hf:TYPE takes a model type as in "
                       "config.json's model_type (bert, gpt2, llama, vit …), a config.json, or "
                       "a model directory.")
    return transformers.AutoConfig.for_model(source), f"{source!r}"


def _encoder_decoder(model, ids: torch.Tensor) -> tuple:
    """T5, BART …: the same ids for the encoder and the decoder, passed where ``forward``
    takes them (wdaudit passes positional arguments; those between stay None)."""
    names = list(inspect.signature(model.forward).parameters)
    if "input_ids" not in names or "decoder_input_ids" not in names:
        return (ids,)
    args: list = [None] * (names.index("decoder_input_ids") + 1)
    args[names.index("input_ids")] = ids
    args[names.index("decoder_input_ids")] = ids
    return tuple(args)


def _hf_inputs(config, model) -> tuple[Any, str]:
    generator = torch.Generator().manual_seed(0)
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and vocab > 0:
        positions = getattr(config, "max_position_embeddings", None) or SEQUENCE
        length = min(SEQUENCE, int(positions))
        ids = torch.randint(0, vocab, (BATCH, length), generator=generator)
        told = f"token ids {BATCH}×{length} in [0, {vocab}) from the configuration"
        if getattr(config, "is_encoder_decoder", False):
            return _encoder_decoder(model, ids), told + ", for the encoder and the decoder"
        return ids, told
    size = getattr(config, "image_size", None)
    if size is not None:
        return _images(getattr(config, "num_channels", 3), size)
    raise LoadError(f"wdaudit cannot derive example inputs from a {config.model_type} "
                    "configuration (no vocab_size, no image_size): pass --input-shape (with "
                    "--input-dtype long --input-range 0,VOCAB for token ids).")
