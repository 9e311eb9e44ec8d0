"""How a finding names many parameters so that a person recognises them at a glance.

A residual stream holds dozens of tensors; an alphabetical list cut after three hides the
ones a user knows (nanoGPT's ``wte``/``wpe`` sort after ``lm_head`` and ``transformer.h.*``).
So: embeddings first, then shallow modules before deep ones, then model order; and the
repeated blocks folded into one pattern — ``transformer.h.*.mlp.c_proj.{bias,weight}`` —
with the count of tensors it stands for."""

from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping, Sequence

import networkx as nx
from torch import nn

_INDEX = re.compile(r"^\d+$")
# names users read as embeddings when the module is not an nn.Embedding (timm's pos_embed,
# ViT's cls_token, GPT-2's wte/wpe written as raw parameters)
_EMBEDDING_WORDS = re.compile(r"(^|[._])(wte|wpe|cls_token|dist_token|\w*embed\w*)($|[._])")

Rank = Callable[[str], tuple]


def ranking(model: nn.Module) -> Rank:
    """The display order of ``model``'s parameters: embeddings, then by module depth, then in
    the order ``named_parameters()`` yields them."""
    modules = dict(model.named_modules())
    order = {n: i for i, (n, _) in enumerate(model.named_parameters(remove_duplicate=False))}

    def is_embedding(name: str) -> bool:
        owner = modules.get(name.rpartition(".")[0])
        return isinstance(owner, (nn.Embedding, nn.EmbeddingBag)) \
            or bool(_EMBEDDING_WORDS.search(name))

    return lambda name: (not is_embedding(name), name.count("."), order.get(name, len(order)),
                         name)


def default_rank(name: str) -> tuple:
    """Without the model: embeddings by their names, then by depth, then alphabetically."""
    return (not _EMBEDDING_WORDS.search(name), name.count("."), name)


def patterns(names: Iterable[str], rank: Rank = default_rank,
             brace: bool = True) -> list[tuple[str, int]]:
    """``names`` folded into display patterns, each with how many names it covers, in the
    order of their first member under ``rank``: layer indices starred where the members
    differ, and (``brace``) the leaves of one module over the same layers in braces."""
    layers: dict[tuple[str, ...], list[str]] = {}  # the name with every index starred
    for n in sorted(dict.fromkeys(names), key=rank):
        layers.setdefault(tuple("*" if _INDEX.match(p) else p for p in n.split(".")),
                          []).append(n)
    starred = [(_unstar(key, members), members) for key, members in layers.items()]
    if not brace:
        return [(".".join(parts), len(members)) for parts, members in starred]
    modules: dict[tuple, list[tuple[str, list[str]]]] = {}
    for parts, members in starred:
        modules.setdefault((parts[:-1], _indices(members)), []).append((parts[-1], members))
    out = []
    for (module, _), leaves in modules.items():
        leaf = leaves[0][0] if len(leaves) == 1 else "{" + ",".join(x for x, _ in leaves) + "}"
        out.append((".".join((*module, leaf)), sum(len(m) for _, m in leaves)))
    return out


def _unstar(key: tuple[str, ...], members: Sequence[str]) -> tuple[str, ...]:
    """Star only the positions where the members differ: one layer stays spelt out."""
    parts = [m.split(".") for m in members]
    return tuple("*" if k == "*" and len({p[i] for p in parts}) > 1 else parts[0][i]
                 for i, k in enumerate(key))


def _indices(members: Sequence[str]) -> tuple[str, ...]:
    """The layer indices a pattern covers: leaves are braced together only over the same
    layers, so that a count never hides which layers are meant."""
    return tuple(sorted({".".join(p for p in m.split(".") if _INDEX.match(p)) for m in members}))


def short(names: Iterable[str], rank: Rank = default_rank, limit: int = 3,
          unit: str = "tensors") -> str:
    """``'wte.weight', 'transformer.h.*.mlp.c_proj.{bias,weight}' (8) and 3 more (12 tensors)``;
    with ``unit=""`` (nodes, not tensors) no braces and no total."""
    names = list(dict.fromkeys(names))
    shown = patterns(names, rank, brace=bool(unit))
    # a count only where a pattern stands for several layers: '{weight,bias}' says its own
    quoted = [f"'{p}'" + (f" ({k})" if "*" in p.split(".") else "") for p, k in shown[:limit]]
    text = ", ".join(quoted)
    if len(shown) > limit:
        text += f" and {len(shown) - limit} more"
    if unit and (len(shown) > limit or any("*" in p.split(".") for p, _ in shown)):
        text += f" ({len(names)} {unit})"
    return text


def ordered(names: Iterable[str], rank: Rank = default_rank) -> tuple[str, ...]:
    return tuple(sorted(dict.fromkeys(names), key=rank))


def components(sets: Mapping[int, Iterable[str]]) -> list[list[int]]:
    """The keys of ``sets`` joined wherever two share a member (connected components), each
    component in key order, components in the order of their first key."""
    graph = nx.Graph()
    graph.add_nodes_from(sets)
    owner: dict[str, int] = {}
    for k, members in sets.items():
        for m in members:
            graph.add_edge(owner.setdefault(m, k), k)
    return sorted((sorted(c) for c in nx.connected_components(graph)), key=lambda c: c[0])
