"""e3backup: deduplicated, compressed, encrypted backups in the restic v2 repository format."""

import os

__version__ = "0.1.0"

# numpy's OpenBLAS starts a thread per core that spins between calls; we never do linear algebra
# (numpy holds index columns and probes buffers), and on a 2-core server the spinning took ~3 %
# of a restore's CPU. Set before numpy is first imported; a value the user set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
