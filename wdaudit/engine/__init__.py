"""The engine: the stages of DESIGN.md §2, one module each, in pipeline order.

trace → graph → influence → degrees → symmetries → claims → confirm → verdicts → findings

Each stage is a function of the previous stage's frozen output and returns the next; the
driver that calls them is :func:`wdaudit.audit`.  The engine reads the op table
(:mod:`wdaudit.ops`) and never imports the front end: where a finding points is a function the
driver passes in.
"""

PIPELINE = ("trace", "graph", "influence", "degrees", "symmetries", "claims", "confirm",
            "verdicts", "findings")
"""The stage modules, in the order the driver runs them."""
