"""The one base class of problems worded for the user (bad input, not bugs).

Entry points catch UserError only and print it as one line with a non-zero exit; any other
exception is a bug in this project and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, configuration, files or machine; the message says which."""
