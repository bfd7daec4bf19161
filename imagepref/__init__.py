"""imagepref: align token-predicting image generators with human preferences.

This small package holds what every part shares and that imports nothing heavy: the error
base class and the version. The parts themselves are the sibling packages ``policy``,
``reward``, ``labeling``, ``eval`` and ``recipes``.
"""

from imagepref.errors import ImagePrefError

__version__ = "0.1.0"
__all__ = ["ImagePrefError", "__version__"]
