"""The usual rules of thumb for which parameters to decay, side by side with the proof.

Each rule is re-stated from its own source (read there, not copied), over the model's trainable
parameters under their canonical names; tests/test_folklore.py checks every re-statement against
the library's own function where the library is installed.

* ``ndim``: nanoGPT's ``configure_optimizers`` — decay every tensor with ``dim() >= 2``.
* ``timm``: ``timm.optim.param_groups_weight_decay`` as ``create_optimizer_v2`` calls it (timm
  1.0.31) — no decay for ``ndim <= 1``, names ending in ``.bias``, or names matching (fnmatch)
  the model's ``no_weight_decay()`` list.
* ``huggingface``: ``Trainer.get_decay_parameter_names`` (transformers 5.24) — no decay inside
  an ``nn.LayerNorm`` module, nor when the lower-cased name matches ``bias``, ``layernorm``,
  ``rmsnorm``, ``(^|.)norm($|.)`` or ``_norm($|.)``.
* ``torchvision``: ``set_weight_decay(model, wd, norm_weight_decay=0.0)`` of torchvision's
  references/classification/utils.py — no decay for parameters held directly by a BatchNorm,
  LayerNorm, GroupNorm, InstanceNorm or LocalResponseNorm module.

And one rule for *correcting* decay rather than choosing it, :func:`adamc`: Defazio (2025)
scales the decay by lr_t/lr_max (AdamC, SGDC) on the layers followed by a normalisation, applied
in practice to "every linear layer but the output" (the weights of every ``nn.Linear`` except the
last one the model registers).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from torch import nn

from ..report import EFFECTIVE, FROZEN, INEFFECTIVE
from ..messages import one_line

ADAMC_SOURCE = ("Defazio 2025, Why Gradients Rapidly Increase Near the End of Training: AdamC "
                "corrects the decay of every linear layer except the output")

SOURCES = {
    "ndim": "nanoGPT model.py configure_optimizers (dim() >= 2 decayed); timm's "
            "weight_decay_exclude_1d does the same for ndim <= 1",
    "timm": "timm.optim.param_groups_weight_decay via create_optimizer_v2 (timm 1.0.31)",
    "huggingface": "transformers Trainer.get_decay_parameter_names (transformers 5.24)",
    "torchvision": "torchvision references/classification/utils.py set_weight_decay, "
                   "norm_weight_decay=0.0",
}
_HF_PATTERNS = tuple(re.compile(p) for p in (r"bias", r"layernorm", r"rmsnorm",
                                             r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"))
_TORCHVISION_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
                      nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class Folklore:
    """What one rule of thumb decays, and where it disagrees with the audit's verdicts."""

    rule: str
    source: str
    decayed: tuple[str, ...]  # sorted
    decays_ineffective: tuple[str, ...]  # scale-free or no-effect tensors it still decays
    exempts_effective: tuple[str, ...]  # tensors whose decay acts that it leaves undecayed
    note: str = ""  # what the rule could not read (the model's no_weight_decay() raised)

    def to_dict(self) -> dict:
        return {"source": self.source, "decayed": list(self.decayed),
                "decays_ineffective": list(self.decays_ineffective),
                "exempts_effective": list(self.exempts_effective), "note": self.note}


def compare(model: nn.Module, verdicts: Mapping[str, str]) -> dict[str, Folklore]:
    """Every rule's decayed set over the trainable parameters, against ``verdicts`` (name →
    ineffective / effective / unknown)."""
    # what trains: a parameter the audit found held fixed is no rule's concern
    params = {n: p for n, p in model.named_parameters()
              if p.requires_grad and verdicts.get(n) != FROZEN}
    exempt, why = _no_weight_decay(model)
    out = {}
    for rule, decays in RULES.items():
        decayed = tuple(sorted(n for n in params if decays(model, n, params[n], exempt)))
        chosen = set(decayed)
        out[rule] = Folklore(
            rule, SOURCES[rule], decayed,
            tuple(n for n in decayed if verdicts.get(n) == INEFFECTIVE),
            tuple(sorted(n for n in params if n not in chosen and verdicts.get(n) == EFFECTIVE)),
            why if rule == "timm" else "")
    return out


def _no_weight_decay(model: nn.Module) -> tuple[tuple[str, ...], str]:
    """timm's per-model exemptions (``model.no_weight_decay()``), and why there are none where
    the method fails or returns something else (said in the rule's note, not hidden: the audit
    does not fail for it)."""
    method = getattr(model, "no_weight_decay", None)
    try:
        found = method() if callable(method) else ()
        return tuple(str(x) for x in found), ""
    except Exception as exc:  # noqa: BLE001 - the user's own method; the rule just has no list
        return (), (f"{type(model).__name__}.no_weight_decay() raised {one_line(exc, 120)}: "
                    "computed without its exemptions")


def _ndim(model, name, p, exempt) -> bool:
    return p.dim() >= 2


def _timm(model, name, p, exempt) -> bool:
    if p.ndim <= 1 or name.endswith(".bias"):
        return False
    return not any(fnmatch.fnmatch(name, pattern) for pattern in exempt)


def _huggingface(model, name, p, exempt) -> bool:
    lowered = name.lower()
    if any(pattern.search(lowered) for pattern in _HF_PATTERNS):
        return False
    parts = name.split(".")[:-1]
    module = model
    for part in parts:  # any module on the way below the root that is a LayerNorm exempts it
        module = getattr(module, part)
        if isinstance(module, nn.LayerNorm):
            return False
    return True


def _torchvision(model, name, p, exempt) -> bool:
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return not isinstance(owner, _TORCHVISION_NORMS)


RULES: dict[str, Callable[[nn.Module, str, nn.Parameter, tuple[str, ...]], bool]] = {
    "ndim": _ndim, "timm": _timm, "huggingface": _huggingface, "torchvision": _torchvision,
}


@dataclass(frozen=True)
class Correction:
    """What a decay-correction rule corrects, against the groups the proof finds scale-free."""

    rule: str
    source: str
    corrected: tuple[str, ...]  # sorted
    agrees: tuple[str, ...]  # corrected, and scale-free
    corrects_effective: tuple[str, ...]  # corrected, but not proven scale-free
    misses_scale_free: tuple[str, ...]  # proven scale-free (and decayed), left uncorrected

    def to_dict(self) -> dict:
        return {"source": self.source, "corrected": list(self.corrected),
                "agrees": list(self.agrees), "corrects_effective": list(self.corrects_effective),
                "misses_scale_free": list(self.misses_scale_free)}


def adamc(model: nn.Module, report, groups) -> Correction:
    """AdamC's rule over the trainable parameters, against the scale-free groups that stand
    (``groups``: the report's, with equilibria where the optimizer decays them)."""
    trained = {n for n, p in report.parameters.items() if p.verdict != FROZEN}
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    corrected = tuple(sorted(n for n in (f"{m}.weight" if m else "weight" for m in linears[:-1])
                             if n in trained))
    scale_free = {n for g in groups if g.kind != "no-effect" for n in g.names
                  if n in report.parameters and report.parameters[n].verdict == INEFFECTIVE}
    decayed = {n for n in scale_free if (report.parameters[n].weight_decay or 0) > 0
               or report.parameters[n].weight_decay is None}
    chosen = set(corrected)
    return Correction("adamc", ADAMC_SOURCE, corrected,
                      tuple(n for n in corrected if n in scale_free),
                      tuple(n for n in corrected if n not in scale_free),
                      tuple(sorted(decayed - chosen)))
