"""offrec's exceptions: what a user can get wrong, apart from bugs.

Library code raises these for bad input (arguments, files, configs); the CLI catches
:class:`OffrecError` and prints one line with exit code 2. Anything else that escapes
(a ``KeyError``, a plain ``TypeError`` from inside numpy) is a bug and keeps its
traceback.

Each class also derives from the built-in exception a Python user would expect, so
``except ValueError`` keeps working::

    OffrecError
    ├── InputError(ValueError)            a value breaks a rule (names field, rule, value)
    │   └── InputTypeError(TypeError)     a value has the wrong type
    ├── MissingInputError(FileNotFoundError)   an input file or folder is not there
    ├── OutputExistsError(FileExistsError)     the output exists and may not be replaced
    ├── OutputBusyError(BlockingIOError)       another process is writing the same output
    ├── NoSpaceError(OSError)                  the write would not fit on the disk
    └── NotWritableError(PermissionError)      the output's place is read-only or forbidden
"""

from __future__ import annotations


class OffrecError(Exception):
    """Base of every error offrec raises on purpose for something the caller gave it."""


class InputError(OffrecError, ValueError):
    """A value breaks a rule, e.g. ``"pscore must be in (0, 1]; row 3 has 0.0"``."""


class InputTypeError(InputError, TypeError):
    """A value has the wrong type, e.g. ``"n_rows must be int; got 1.5 (float)"``."""


class MissingInputError(OffrecError, FileNotFoundError):
    """An input file or folder does not exist or holds nothing offrec can read."""


class OutputExistsError(OffrecError, FileExistsError):
    """The output exists and the caller did not allow replacing it."""


class OutputBusyError(OffrecError, BlockingIOError):
    """Another process is writing the same output (it holds the output's lock)."""


class NoSpaceError(OffrecError, OSError):
    """The estimated size of a write does not fit in the free disk space, or the disk
    filled during the write (nothing was published)."""


class NotWritableError(OffrecError, PermissionError):
    """The output's folder cannot be written: a read-only file system, no permission."""
