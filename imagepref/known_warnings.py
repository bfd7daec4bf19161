"""Third-party warnings that a run of ``imagepref`` would print although nothing is wrong.

The command line (and each ``accelerate launch`` process) calls ``silence_known_warnings`` once.
Each filter names the category and the message (and, where the warning points into the library
that raises it, that module), so any other warning still shows. Library users keep their own
filters: only the entry points call this. ``python -W ...`` or ``PYTHONWARNINGS`` switch it off,
as the warnings documentation recommends for programs that filter by default.
"""

from __future__ import annotations

import sys
import warnings

# (category, message regex matched at the start, module regex or "" for any caller)
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # TRL's trainers read the deprecated alias on every model they unwrap; ours cannot change that.
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
    # GRPO and PPO sample through GRPOTrainer's rollout_func on purpose (our sampler writes the image
    # block); TRL warns with stacklevel=2, so the warning points at the caller, not at TRL.
    (UserWarning, r"You are using 'rollout_func', which is an experimental feature", ""),
)


def silence_known_warnings() -> None:
    """Ignore the ``KNOWN_WARNINGS`` unless the user set warning options of their own."""
    if sys.warnoptions:
        return
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
