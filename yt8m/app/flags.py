"""Library errors in the CLI's words: the library names its parameters, the CLI its options.

Library messages write a parameter in backquotes (`num_classes`, `start_new_model=True`); the CLI
shows the option that sets it (--num-classes, --start-new-model). Parameters whose option is not
simply the name with dashes are listed in `OPTION_OF`.
"""

from __future__ import annotations

import re

# Parameters whose option has another name.
OPTION_OF = {
    "max_pred": "--segment-max-pred",
    "segment_max_pred": "--segment-max-pred",
    "scores_path": "--scores",
    "set_values": "--set",
    "shifts": "--tta-shifts",
    "train_data": "--train-data",
    "train_dir": "--train-dir",
}
_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)(=True)?`")


def option_name(parameter: str) -> str:
    """The CLI option that sets a library parameter."""
    return OPTION_OF.get(parameter, "--" + parameter.replace("_", "-"))


def cli_message(message: str) -> str:
    """`message` with every backquoted parameter replaced by its CLI option."""
    return _PARAMETER.sub(lambda match: option_name(match.group(1)), message)
