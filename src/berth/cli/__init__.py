"""The ``berth`` command line: a thin client of berthd's Docker Engine API (v1.41) on a unix socket.

It imports only the standard library, and only what the chosen command needs, so that a command costs
little more than the interpreter's own start-up; all real work happens in the daemon.
"""
