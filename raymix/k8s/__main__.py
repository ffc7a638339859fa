"""``python -m raymix.k8s [--check] [DIR]``: regenerate (or compare) the examples in ``k8s/``."""

from raymix.k8s.write import main

if __name__ == "__main__":
    raise SystemExit(main())
