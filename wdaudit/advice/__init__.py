"""Advice: from the audit's proof to what to do about it.

``equilibrium`` predicts what each decay term on a scale-free group does in numbers (the
angular update it settles at, the norm, how long that takes), ``folklore`` sets the usual rules
of thumb beside the proof, and ``param_groups`` builds the optimizer parameter groups to use.
This layer reads the report; the engine and the op table never import it.
"""

# the schedules by name (``schedule.Schedule``); here, where the command line reads them
# without importing torch
SCHEDULES = ("cosine", "linear", "wsd", "constant")
