"""``python -m dmtl`` (also what ``torchrun -m dmtl`` launches)."""

from dmtl.cli import main

if __name__ == "__main__":
    main()
