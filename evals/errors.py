"""Errors caused by the user's input (a bad file, an unknown option value).

The CLI turns these into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""


class InputError(ValueError):
    """Bad user input; the message names the input and what would fix it."""
