"""Where the browser libraries Millrace serves itself live (no CDN at run time).

They come from npm, pinned by ``web/package-lock.json`` and installed by ``make install``
(``npm ci`` into ``web/node_modules``); a container image copies that folder. ``WEB_ASSETS_DIR``
points elsewhere when the folder is not beside the code.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEFAULT = Path(__file__).resolve().parent.parent / "web" / "node_modules"


def asset_dir(package: str) -> Path:
    """The installed folder of one npm package, e.g. ``swagger-ui-dist`` or ``uplot``."""
    root = Path(os.environ.get("WEB_ASSETS_DIR") or _DEFAULT)
    return root / package
