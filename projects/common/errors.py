"""The base class of every "your input is wrong" error the repository raises.

Tools catch :class:`BadInputError` and print its message (which names the file, key or argument and what was
expected) instead of a traceback; each subclass also derives from the matching builtin error, so
``except ValueError`` / ``except KeyError`` callers catch it too.
"""


class BadInputError(Exception):
    """Input (a file, a config key, a command-line argument) that cannot be used; the message says why."""
