"""``python -m wdaudit``: the same command as ``wdaudit``."""

from .frontend.cli import main

if __name__ == "__main__":
    main(prog_name="wdaudit")
