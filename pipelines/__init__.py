"""The Beam pipeline: `run.py` tells the story of one micro-batch, one module per step.

Nothing heavy is imported here: `import parcours.pipelines` must stay cheap for the CLI.
"""

from __future__ import annotations

import logging


def import_beam_quietly() -> None:
    """Import Beam with its import-time warnings about optional cloud extras silenced.

    apache_beam warns at import that the GCP client libraries are missing; parcours does not
    use them, and the warning on every command and every flow run would hide the ones that matter.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import apache_beam  # noqa: F401
    finally:
        root.setLevel(level)
