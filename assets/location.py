"""The code location as a module whose ``defs`` exists at import (``dg`` commands find definitions by
scanning a module's attributes; :mod:`assets.definitions` builds its ``defs`` lazily, on first access)."""

from assets.definitions import defs as defs
