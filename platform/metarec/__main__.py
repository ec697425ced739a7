"""``python -m metarec``: the ``metarec`` command.

``torchrun --nnodes=N --nproc-per-node=G -m metarec train …`` runs distributed meta-training
through it (see docs/learning.md, "Distributed meta-training").
"""

from metarec.cli.main import main

if __name__ == "__main__":
    main()
