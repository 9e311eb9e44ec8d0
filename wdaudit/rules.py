"""The rule catalogue: stable codes, each with what it flags, why, and an example.

Messages are data (as in pyflakes); the findings stage decides which apply, the report layer
prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str  # default severity: "error" | "warning" | "info"
    summary: str
    why: str
    example: str
    # the finding's message: a template per variant ("" the default) that the findings stage
    # fills with its arguments, as pyflakes' message classes are a template and its arguments
    messages: Mapping[str, str] = field(default_factory=dict)

    def text(self, variant: str = "", **args) -> str:
        return self.messages[variant].format(**args)


_LEARNING_RATE = ". Decay here only sets the effective learning rate (angular step size){assumed}"


# Without an optimizer, which parameters count as decayed (the findings stage applies it).  It
# lives here, beside the rules it feeds and free of torch, so that the command line can offer
# it as a choice without importing the engine.
ASSUME_CHOICES = ("all", "matrices", "none")


RULES: dict[str, Rule] = {r.code: r for r in (
    Rule("WD001", "decay-on-scale-free", "warning",
         "Weight decay on parameters whose scale is free.",
         "Rescaling these parameters (alone or jointly with the rest of their group) leaves "
         "every output unchanged, so the L2 penalty can be driven to zero without changing the "
         "function: it cannot regularise. What the decay still does is set the effective "
         "learning rate (the angular step size) of these weights. Keep it if you tune it as "
         "such; otherwise, tune it knowingly, or exclude these parameters from decay.",
         "nn.Linear(64, 64) followed by nn.LayerNorm(64): the Linear's weight and bias are "
         "scale-free; decaying them only changes their effective learning rate.",
         messages={
             "": "weight decay on {names} cannot regularise: the output does not change when "
                 "{subject} rescaled{together}{normalised}{eps}" + _LEARNING_RATE,
             # claims sharing members: one set of tensors that scale together, several rays
             "set": "weight decay on {names} cannot regularise: {subject} one set of "
                    "tensors that scale together{others}: the output does not change along "
                    "any of its {rays} rescalings (their basis: the finding's groups in "
                    "--format json){normalised}{eps}" + _LEARNING_RATE}),
    Rule("WD002", "coupled-l2-with-adaptive-optimizer", "warning",
         "Coupled L2 weight decay in an adaptive optimizer.",
         "Adam, RMSprop, Adagrad and friends add weight_decay * θ to the gradient before the "
         "per-coordinate normalisation, so the decay of each weight is divided by its gradient "
         "scale: large-gradient weights are barely decayed. Decoupled decay (AdamW, or "
         "decoupled_weight_decay=True) is what is almost always meant.",
         "torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01) → use "
         "torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01).",
         messages={"": "{optimizer} applies weight_decay={weight_decay:g} as coupled L2 to "
                       "{count} parameter(s): the adaptive step divides it by each weight's "
                       "gradient scale. Use AdamW (decoupled decay) unless this is intended"}),
    Rule("WD003", "decay-on-no-effect", "warning",
         "Weight decay on a parameter that has no effect on the output.",
         "The parameter is unused on the way to every output, or it is an additive offset that "
         "something downstream removes: a mean-subtracting normaliser (a conv bias right before "
         "BatchNorm), a mean subtraction, a softmax, or attention (a key bias shifts every "
         "logit of a query alike). The message names which. Its gradient is zero; decay only "
         "shrinks it towards 0, to no purpose.",
         "nn.Conv2d(3, 16, 3) (bias=True) followed by nn.BatchNorm2d(16): the conv bias has no "
         "effect; build the conv with bias=False.",
         messages={"": "weight decay on '{name}', which has {reason}; the decay only shrinks "
                       "it towards zero{assumed}"}),
    Rule("WD004", "partly-decayed-group", "info",
         "A scale-free group is only partly decayed.",
         "The group rescales jointly. The decayed members shrink while the undecayed ones are "
         "free to grow to compensate, so the decay balances norms inside the group rather than "
         "regularising the function.",
         "Decaying a pre-LN transformer's c_proj weights but not its embeddings (untied head): "
         "the residual stream is one scale-free group.",
         messages={"": "scale-free {which} only partly decayed: {decayed} decayed, {undecayed} "
                       "not; the undecayed members can grow to compensate"}),
    Rule("WD005", "unconfirmed-claim", "warning",
         "The static analysis claims decayed parameters are scale-free, but the claim could "
         "not be confirmed.",
         "Every static claim is checked numerically before it is reported. Where the check "
         "could not run (the model raised in float64 and in float32, its output is NaN, it "
         "reads the user's own tensors through a closure or global the audit cannot redirect) "
         "or did not pass, the parameters are reported unknown. This says so, so that a lint "
         "step cannot pass silently on an audit that proved nothing.",
         "A model that asserts `self.cos.dtype == torch.bfloat16` raises in both check "
         "precisions: its claims stay unknown, and WD005 names them with the reason.",
         messages={"": "weight decay on {names}: statically scale-free or without effect, but "
                       "not confirmed ({note}); reported unknown, decay judged nothing{assumed}"}),
)}

SEVERITIES = ("info", "warning", "error")


def at_least(severity: str, level: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(level)


class UnknownRuleError(ValueError):
    """A rule selector (in ``select``/``ignore``, a flag or the config) that names no rule."""

    def __init__(self, selector: str):
        super().__init__(selector)
        self.selector = selector


def expand(selectors: Iterable[str]) -> frozenset[str]:
    """The rule codes named by ``selectors``: exact codes, code prefixes (``WD00``) or ``ALL``."""
    codes: set[str] = set()
    for selector in selectors:
        key = selector.strip().upper()
        matched = [c for c in RULES if key == "ALL" or c.startswith(key)] if key else []
        if not matched:
            raise UnknownRuleError(selector)
        codes.update(matched)
    return frozenset(codes)


def enabled(select: Iterable[str] | None, ignore: Iterable[str] = ()) -> frozenset[str]:
    """The codes to report: everything (or ``select``), minus ``ignore``."""
    chosen = frozenset(RULES) if select is None else expand(select)
    return chosen - expand(ignore)
