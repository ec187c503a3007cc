"""The `rnnlab-*` commands: each only parses its arguments and calls library functions.

Every command (and train.py) reports a user's mistake through `user_errors`: one line on stderr,
`error: ...`, exit status 2, no traceback.
"""
