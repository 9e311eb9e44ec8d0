"""Small timm models for the breadth sweep (tools/sweep/sweep.py): every architecture of timm's
registry at its own widths, at 64 px or the nearest side it accepts (``SIDES``; batch 2), random
weights, nothing downloaded; past 150 M parameters with fewer blocks of the same kinds
(``timm_fewer_blocks``)."""

from __future__ import annotations

import functools

IMAGE = 64  # px: the smallest many timm architectures accept (patch 16, 4 stages of /2)


def timm_names() -> list[str]:
    import timm

    return sorted(timm.list_models())


def build_timm(name: str):
    import torch

    fewer = timm_fewer_blocks(name)
    built = _timm_at_image(name, fewer)
    if built is None and KEEP in fewer:  # dropping blocks broke it (a block picked by index)
        fewer = {}
        built = _timm_at_image(name, fewer)
    if built is None:
        # a fixed input size none of SIDES meets: the model as its config makes it, at its own
        # size (one built for a side it refuses would refuse its own size too)
        fewer = {k: v for k, v in fewer.items() if k != KEEP}
        model = _timm_at(name, fewer, {})
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        size = int((cfg.get("input_size") or (3, 224, 224))[-1])
        built = model, torch.randn(2, _chans(model), size, size)
    built[0].sweep_fewer_blocks = fewer  # what the row reports: the model as built
    return built


# image sides tried in turn: IMAGE first, then the nearest that patch grids and pooling kernels
# which do not divide 64 px accept (patch 14: 56 or 70; deepseek_vit; patch 16 x pooling 3:
# 96; gemma4_vit); a model refusing all of them is audited at its own size (build_timm)
SIDES = (IMAGE, 56, 70, 96, 112, 128, 192, 224)


def _timm_at_image(name: str, fewer: dict):
    """The model and an input of the first of SIDES it accepts, or None where it refuses them."""
    import torch

    plain, sized = None, True
    for side in SIDES:
        if sized:  # an entry point refusing img_size refuses it at every side
            model = _timm_at(name, fewer, {"img_size": side})
            sized = model is not None
            if sized and _accepts(model, side, _chans(model)):
                return model, torch.randn(2, _chans(model), side, side)
        plain = plain or _timm_at(name, fewer, {})
        if _accepts(plain, side, _chans(plain)):
            return plain, torch.randn(2, _chans(plain), side, side)
    return None


def _timm_at(name: str, fewer: dict, size: dict):
    """The model built with ``fewer`` blocks; None where the entry point refuses ``size``."""
    import timm

    args = {k: v for k, v in fewer.items() if k != KEEP}
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10, **args, **size)
    except TypeError:
        if size:
            return None
        raise
    if KEEP in fewer:
        _keep_blocks(model, fewer[KEEP])
    return model


def _chans(model) -> int:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return int((cfg.get("input_size") or (3,))[0])


LARGE = 150_000_000  # parameters past which a timm model is built with fewer blocks


@functools.lru_cache(maxsize=None)
def timm_fewer_blocks(name: str) -> dict:
    """The keyword arguments that build a timm architecture of more than ``LARGE`` parameters
    with fewer blocks of the same kinds (2 per tower, 1 per stage), or {} where it is small or
    its entry point takes no such argument.  Its giants (vit_7b: 6.7 B) would otherwise cost a
    2-core machine minutes and tens of GiB of float64 for what two blocks already show: every
    block of a stage is the same module with other weights.  Counted on the meta device."""
    import torch

    full = _meta(name)
    if full is None or _count(full) <= LARGE:
        return {}
    stages = 4  # ResNet-like: layer1..layer4
    for attr in ("stages", "layers", "levels"):
        if isinstance(getattr(full, attr, None), (torch.nn.ModuleList, torch.nn.Sequential)):
            stages = len(getattr(full, attr))
            break
    for kwargs in ({"depth": 2}, {"depths": (1,) * stages}, {"layers": (1,) * stages}):
        smaller = _meta(name, **kwargs)
        if smaller is not None and _count(smaller) < _count(full):
            return kwargs
    # an entry point that fixes its depths itself (focalnet: a second `depths` is a TypeError):
    # the blocks are dropped after building, where that leaves a model that still runs
    before = _count(full)
    _keep_blocks(full, 2)
    return {KEEP: 2} if _count(full) < before else {}


KEEP = "keep_blocks"  # not an argument of timm's: blocks kept of every run of same-kind blocks


def _keep_blocks(model, keep: int) -> None:
    """Keeps the first ``keep`` blocks of each kind in every list of blocks that repeat blocks of
    the model's own: one class (not a torch layer's) and, after the first, at most two sets of
    parameter shapes, each repeated (sapiens2 has full-attention blocks at both ends and
    grouped-query ones between).  A list of stages changes width along it and is kept whole.
    Lists are Sequential/ModuleList, or modules whose forward runs their children in turn
    (regnet's RegStage: ``for block in self.children()``)."""
    import collections

    import torch

    def shapes(block):
        return tuple((n, tuple(p.shape)) for n, p in block.named_parameters())

    for module in list(model.modules()):
        blocks = list(module.named_children()) if _runs_children(module) else []
        if len(blocks) <= keep:
            continue
        classes = {type(m) for _, m in blocks}
        if len(classes) != 1 or next(iter(classes)).__module__.startswith("torch."):
            continue
        signatures = [shapes(m) for _, m in blocks]
        runs = collections.Counter(signatures[1:])
        if len(runs) > 2 or min(runs.values()) < keep:
            continue
        seen = collections.Counter()
        dropped = []
        for at, signature in enumerate(signatures):
            seen[signature] += 1
            if at and seen[signature] > keep:
                dropped.append(at)
        for at in reversed(dropped):
            if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)):
                del module[at]  # renumbered: code that indexes the list finds what is left
            else:
                delattr(module, blocks[at][0])


def _runs_children(module) -> bool:
    import torch

    if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)):
        return True
    return not type(module).__module__.startswith("torch.") and _forward_runs_children(
        type(module))


@functools.lru_cache(maxsize=None)
def _forward_runs_children(cls) -> bool:
    """Read once per class: a giant has thousands of modules of a few classes."""
    import inspect

    try:
        return "in self.children()" in inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False


def _meta(name: str, **kwargs):
    import timm
    import torch

    try:
        with torch.device("meta"):
            return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    except Exception:  # noqa: BLE001 - an entry point that refuses the argument
        return None


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _accepts(model, size: int, chans: int = 3) -> bool:
    import torch

    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, chans, size, size))
        return True
    except Exception:
        return False
    finally:
        model.train()
