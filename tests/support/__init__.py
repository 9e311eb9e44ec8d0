"""Shared test support: the brute-force oracle (``oracle``), random models (``randmodels``),
the architecture zoo (``zoo``), the differential assertion that compares an audit with the
oracle (``differential``), and small models and numerical probes for the stage tests
(``probes``)."""
