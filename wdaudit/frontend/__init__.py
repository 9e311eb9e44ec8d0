"""The front end: the command line and what it needs around the engine — loading a target,
configuration, source locations, ``# noqa`` comments and output formats."""
