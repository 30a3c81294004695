"""Device check (issue: one-pass training): an epoch of both layouts per preset in bf16 on the GPU."""

import os
import sys
import time
from pathlib import Path

import hybrid_rearec.hybrid.readers as readers
import torch

# MovieLens-100k as carried (the recbole package is not installed on the device machine)
readers.recbole_dataset_dir = lambda name: Path(os.environ.get("ML100K_DIR", ".device/ml-100k")).resolve()
from hybrid_rearec.hybrid.studies import one_pass  # noqa: E402
from hybrid_rearec.hybrid.studies.reports import BenchmarkConfig  # noqa: E402

dry = len(sys.argv) > 1 and sys.argv[1] == "dry"
print("cuda:", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
started = time.time()
if dry:
    from accelerate import Accelerator
    from hybrid_rearec.hybrid.config import DataConfig
    from hybrid_rearec.hybrid.data import load_dataset

    dataset = load_dataset(DataConfig())
    f = one_pass.epoch_function(dataset, one_pass.PRESETS["rearec-prl"], "one_pass", Accelerator(cpu=True))
    print("dry ok", dataset.num_items, len(dataset.train))
else:
    out = Path(os.environ.get("OUT", "benchmarks"))
    one_pass.run(
        BenchmarkConfig(output_dir=out, threads=16), rounds=2, mixed_precision="bf16", name="one_pass_h200_bf16"
    )
print(f"seconds: {time.time() - started:.0f}")
