"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input (unknown name, unreadable file, missing data...). Message says what and how to fix."""

    exit_code = 2
