"""``python -m raymix``: the ``raymix`` command (:func:`raymix.cli.run`)."""

from raymix.cli import run

if __name__ == "__main__":
    run()
