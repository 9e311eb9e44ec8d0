"""The engine: the stages of DESIGN.md §2, in three layers.

* ``tracing``: the model → a ``Program`` (symbolic_trace, export, make_fx), on a working copy
  of the model, and how a program runs on tensors we own (eps → 0, float64 stand-ins);
* ``analysis``: the program's graph → influence → degrees → symmetries → claims, and after
  confirmation the verdicts and findings; what the training run updates;
* ``confirmation``: every claim checked numerically (DESIGN.md §4), and what its passes share.

trace → graph → influence → degrees → symmetries → claims → confirm → verdicts → findings

Each stage is a function of the previous stage's frozen output and returns the next; the
driver that calls them is :mod:`wdaudit.audit`.  The engine reads the op table
(:mod:`wdaudit.ops`) and never imports the driver, the front end or the advice layer: where a
finding points is a function the driver is given.
"""

PIPELINE = ("tracing.trace", "analysis.graph", "analysis.influence", "analysis.degrees",
            "analysis.symmetries", "analysis.claims", "confirmation.confirm",
            "analysis.verdicts", "analysis.findings")
"""The stage modules (layer.module), in the order the driver runs them."""
