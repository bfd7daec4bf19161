"""The one base class for errors a user can cause.

The command line turns any ``ImagePrefError`` into one line on stderr and exit status 2. Raise
it (or a subclass) with a message that names the problem and the fix.
"""


class ImagePrefError(Exception):
    """A problem with the user's input or environment, reported as one line, exit status 2."""


class BadInputError(ImagePrefError):
    """A file, folder or argument the user gave is missing, empty or malformed."""


class UnknownNameError(ImagePrefError):
    """A name (family, engine, axis, stage, head) that imagepref does not know."""
