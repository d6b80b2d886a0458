"""The probes' dataset: a `ftpdet data synth` directory given as the first argument, else one made here."""

import sys
from pathlib import Path

from ftpdet.data.synth import synthesize_once


def probe_data() -> Path:
    if len(sys.argv) > 1 and not sys.argv[1].endswith(".pt"):
        return Path(sys.argv[1])
    data = Path("runs/speed_probes/data")
    synthesize_once(data, seed=0, num_train=256, num_val=8, image_size=128)
    return data
