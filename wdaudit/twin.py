"""Confirmation on a twin: claims about a model too large to confirm in float64 (a 70B
transformer, or one built on the meta device) checked on a smaller model that must make the
same claims.

The twin is the model's own class built from a copy of its Hugging Face configuration with
every width reduced (hidden size, feed-forward widths, heads and key/value heads with the head
dimension kept consistent, vocabulary, experts, positions) and the depth and topology kept, in
float64 on the CPU.  Its parameters then have the model's names, so the twin's claims and the
model's static claims can be compared one to one.  Only where they are the same claims (the
same members with the same exponents, the same parameters without effect) do the twin's
numerical checks stand for the model's; otherwise nothing is confirmed and the first difference
is the reason.  Why a twin may stand in: a claim is a fact about the graph (which op follows
which, which widths are summed), and widths only size the tensors; where a width changes the
graph after all (a branch on a size), the claims differ and the comparison says so.
"""

from __future__ import annotations

import copy
import math
import sys
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Mapping

import torch
from torch import nn

from .engine.rng import seeded
from .messages import one_line
from .report import CHECKED, FAILED, Confirmation

HEAD_DIM = 8  # the twin's head dimension (even: rotary embeddings rotate pairs)
KV_HEADS = 2  # key/value heads, and query heads per key/value head (GQA kept GQA, MHA MHA)
HIDDEN = 16  # at least, where the hidden size is not heads × head_dim
VOCAB = 128
POSITIONS = 64  # at least, and at least the longest input axis
FEED_FORWARD = ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "encoder_ffn_dim",
                "decoder_ffn_dim", "moe_intermediate_size", "shared_expert_intermediate_size")
EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts")
TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


class NoTwin(ValueError):
    """No twin can be built for this model; the message says why and what to do instead."""


@dataclass(frozen=True)
class Twin:
    """The twin, the inputs it runs on, and each reduced configuration field as
    ``field -> (the model's value, the twin's value)``."""

    model: nn.Module
    inputs: tuple
    widths: Mapping[str, tuple[int, int]]

    def told(self) -> str:
        return _told(self.widths)


def build(model: nn.Module, inputs: tuple, seed: int = 0,
          fixed: frozenset[str] = frozenset()) -> Twin:
    """The twin of ``model`` (raises :class:`NoTwin`), in the model's train/eval modes, with
    the tensors training holds fixed (``fixed``, by name) held fixed in it too."""
    config = _config_of(model)
    longest = max((max(x.shape, default=1) for x in inputs if isinstance(x, torch.Tensor)),
                  default=1)
    names = [n for n, _ in model.named_parameters()]
    widths = _reduced(config, longest, experts=True)
    twin = _built(model, config, widths, seed)
    if [n for n, _ in twin.named_parameters()] != names and any(k in widths for k in EXPERTS):
        # experts held as modules of their own: their number is in the names, so it stays
        widths = _reduced(config, longest, experts=False)
        twin = _built(model, config, widths, seed)
    theirs = [n for n, _ in twin.named_parameters()]
    if theirs != names:
        first = next((a, b) for a, b in zip(names + [None] * len(theirs),
                                            theirs + [None] * len(names)) if a != b)
        raise NoTwin(f"a twin of {type(model).__name__} cannot stand in for it: with reduced "
                     f"widths ({_told(widths)}) its parameters are named otherwise (first "
                     f"difference: {first[0]!r} in the model, {first[1]!r} in the twin), so "
                     "its claims cannot be mapped onto the model's by name. Confirm on the "
                     "model itself (confirm_on='model') or audit statically (confirm=False).")
    modules = dict(model.named_modules())
    for name, module in twin.named_modules():
        module.training = modules[name].training
    for name, p in twin.named_parameters():
        p.requires_grad_(name not in fixed)
    vocab = widths.get("vocab_size", (None, None))[1]
    return Twin(twin, _twin_inputs(inputs, vocab, seed), widths)


def _config_of(model: nn.Module):
    config = getattr(model, "config", None)
    transformers = sys.modules.get("transformers")  # a model with such a config imported it
    base = getattr(transformers, "PretrainedConfig", None)
    if base is None or not isinstance(config, base):
        raise NoTwin(f"a twin cannot be built for {type(model).__name__}: confirm_on='twin' "
                     "builds the same model with reduced widths from a copy of its Hugging Face "
                     "configuration (a transformers PretrainedConfig at model.config), and this "
                     "model has none, so wdaudit cannot know which of its sizes are widths. "
                     "Confirm on the model itself (confirm_on='model', the default; fewer "
                     "example inputs make it cheaper), or audit it statically (confirm=False).")
    return config


def _int(config, key: str) -> int | None:
    value = getattr(config, key, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reduced(config, longest: int, experts: bool) -> dict[str, tuple[int, int]]:
    """``field -> (value, reduced value)`` for every width the configuration has."""
    hidden, heads = _int(config, "hidden_size"), _int(config, "num_attention_heads")
    if not hidden or not heads:
        raise NoTwin(f"a twin cannot be built from the {config.model_type} configuration: it "
                     "has no hidden_size and num_attention_heads to reduce. Confirm on the "
                     "model itself (confirm_on='model') or audit statically (confirm=False).")
    kv = _int(config, "num_key_value_heads") or heads
    head_dim = _int(config, "head_dim") or hidden // heads
    kv_twin = min(kv, KV_HEADS)
    heads_twin = kv_twin * min(heads // kv, KV_HEADS)
    dim_twin = min(head_dim, HEAD_DIM)
    hidden_twin = heads_twin * dim_twin
    if hidden != heads * head_dim:  # decoupled by an explicit head_dim: the ratio is kept
        hidden_twin = max(math.ceil(hidden_twin * hidden / (heads * head_dim)), HIDDEN)
    hidden_twin = min(hidden, hidden_twin)
    out = {"hidden_size": (hidden, hidden_twin), "num_attention_heads": (heads, heads_twin)}
    if _int(config, "num_key_value_heads"):
        out["num_key_value_heads"] = (kv, kv_twin)
    if _int(config, "head_dim"):
        out["head_dim"] = (head_dim, dim_twin)
    for key in FEED_FORWARD:  # widths in proportion, so that equal widths stay equal
        width = _int(config, key)
        if width:
            out[key] = (width, min(width, max(1, math.ceil(width * hidden_twin / hidden))))
    vocab = _int(config, "vocab_size")
    if vocab:
        out["vocab_size"] = (vocab, min(vocab, VOCAB))
    positions = _int(config, "max_position_embeddings")
    if positions:
        out["max_position_embeddings"] = (positions, min(positions, max(POSITIONS, longest)))
    chosen = _int(config, "num_experts_per_tok") or 1
    for key in EXPERTS if experts else ():
        n = _int(config, key)
        if n:  # twice the experts a token is routed to: routing still chooses
            out[key] = (n, min(n, max(2 * chosen, 2)))
    return {k: v for k, v in out.items() if v[0] != v[1]}


def _built(model: nn.Module, config, widths: Mapping[str, tuple[int, int]], seed: int):
    small = copy.deepcopy(config)
    for key, (_, value) in widths.items():
        setattr(small, key, value)
    vocab = widths.get("vocab_size", (None, None))[1]
    for key in TOKEN_IDS if vocab else ():  # special tokens inside the twin's vocabulary
        value = getattr(small, key, None)
        if isinstance(value, int) and value >= vocab:
            setattr(small, key, vocab - 1)
        elif isinstance(value, list):
            setattr(small, key, [min(v, vocab - 1) for v in value])
    try:
        with torch.device("cpu"), seeded(seed):
            return type(model)(small).to(torch.float64)
    except Exception as exc:  # noqa: BLE001 - the library's constructor, on a config we made
        raise NoTwin(f"a twin of {type(model).__name__} cannot be built: its class raised "
                     f"{one_line(exc)} on the configuration with reduced widths "
                     f"({_told(widths)}). Confirm on the model itself (confirm_on='model') or "
                     "audit statically (confirm=False).") from exc


def _told(widths: Mapping[str, tuple[int, int]]) -> str:
    return ", ".join(f"{k} {a}→{b}" for k, (a, b) in widths.items())


def _twin_inputs(inputs: tuple, vocab: int | None, seed: int) -> tuple:
    """The model's inputs for the twin: token ids folded into its vocabulary (values below it,
    masks and -100 labels, kept), tensors on the meta device drawn afresh."""
    generator = torch.Generator().manual_seed(seed)
    out: list[Any] = []
    for x in inputs:
        if not isinstance(x, torch.Tensor):
            out.append(x)
        elif x.dtype == torch.bool:
            out.append(torch.ones(x.shape, dtype=torch.bool) if x.is_meta else x.cpu())
        elif x.is_floating_point() or x.is_complex():
            out.append(torch.randn(x.shape, generator=generator, dtype=torch.float64)
                       if x.is_meta else x.cpu())
        elif x.is_meta:
            out.append(torch.randint(0, vocab or 2, x.shape, generator=generator,
                                     dtype=x.dtype))
        else:
            x = x.cpu()
            out.append(torch.where(x >= vocab, x % vocab, x) if vocab else x)
    return tuple(out)


# --- the twin's confirmation, as the model's ------------------------------------------------


def claim_key(claim) -> tuple:
    """What a claim says, by parameter names: the tensors without effect, or a group's members
    with their exponents."""
    if claim.kind == "no-effect":
        return ("no-effect", tuple(claim.redraw))
    return (claim.kind, tuple(sorted(claim.group.exponents.items())))


def _described(key: tuple) -> str:
    kind, what = key
    if kind == "no-effect":
        return f"that {', '.join(what)} has no effect"
    names = [name for name, _ in what]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"a {kind} group of {len(names)} tensors ({shown})"


def mismatch(model_claims, twin_claims) -> str:
    """The first claim one makes and the other does not ("" when they make the same)."""
    mine = Counter(claim_key(c) for c in model_claims.claims)
    theirs = Counter(claim_key(c) for c in twin_claims.claims)
    for key in (claim_key(c) for c in model_claims.claims):
        if theirs[key] < mine[key]:
            return f"the model claims {_described(key)}, the twin does not"
    for key in (claim_key(c) for c in twin_claims.claims):
        if mine[key] < theirs[key]:
            return f"the twin claims {_described(key)}, the model does not"
    return ""


def confirmed(model_claims, twin_claims, twin_confirmation: Confirmation,
              twin: Twin) -> Confirmation:
    """The model's confirmation from the twin's: each model claim gets the check of the twin's
    identical claim; any difference between the two claim sets confirms nothing."""
    widths = dict(twin.widths)
    different = mismatch(model_claims, twin_claims)
    if different:
        return Confirmation(FAILED, twin_confirmation.device, twin_confirmation.passes,
                            f"cannot confirm on a twin ({twin.told()}): its claims are not the "
                            f"model's one to one: {different}", on="twin", twin=widths)
    if twin_confirmation.outcome != CHECKED:
        reason = twin_confirmation.reason.removeprefix("cannot confirm: ")
        return replace(twin_confirmation, outcome=FAILED, on="twin", twin=widths,
                       reason=f"cannot confirm on a twin ({twin.told()}): {reason}")
    index = {claim_key(c): i for i, c in enumerate(twin_claims.claims)}
    checks = tuple(twin_confirmation.checks[index[claim_key(c)]]
                   for c in model_claims.claims)
    return replace(twin_confirmation, checks=checks, on="twin", twin=widths,
                   defects=tuple(f"on the twin: {d}" for d in twin_confirmation.defects),
                   trail=tuple(f"twin {t}" for t in twin_confirmation.trail))


def failed(twin: Twin, why: str) -> Confirmation:
    """The twin could not be audited at all: nothing of the model is confirmed."""
    return Confirmation(FAILED, "cpu", 0, f"cannot confirm on a twin ({twin.told()}): {why}",
                        on="twin", twin=dict(twin.widths))
