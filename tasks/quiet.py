"""No progress bars in logs: what a worker's log (or any redirected output) should not fill with.

Progress bars (tqdm: the trainer's, transformers' "Loading weights", MLflow's "Downloading
artifacts") redraw a line many times a second; on a terminal that is useful, in a log file it is
noise. `quiet_progress_bars()` turns the libraries' own switches off when stderr is not a
terminal; environment variables set by the operator win, and child processes (torchrun) inherit
the switches.
"""

from __future__ import annotations

import os
import sys

QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub and transformers (read at import)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TRANSFORMERS_VERBOSITY": "error",  # no weight-load report in the log
}


def quiet_progress_bars() -> bool:
    """Switch progress bars off unless stderr is a terminal; returns whether it did."""
    if sys.stderr.isatty():
        return False
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "transformers" in sys.modules:  # imported already: its switch was read at import
        from transformers.utils import logging as hf_logging

        if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
            hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    return True
