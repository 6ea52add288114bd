"""The one error type every stage raises for bad user input.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2; anything else
is a bug and keeps its traceback.  Lives in ``simulator`` because it is the torch-free base
package that every other stage (pruning, reports) already depends on for its file formats.
"""


class UserError(Exception):
    """Bad input from the user: a path, a flag, a file format.  The message is one line."""
