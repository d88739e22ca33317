"""`python -m edgecv.cli` (also what torchrun -m runs)."""
import sys

from edgecv.cli import main

sys.exit(main())
