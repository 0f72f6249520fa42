"""berth's stress suite: concurrency, crashes, hostile input and limits, each against a throwaway host.

``stress/run.py --profile quick|long`` drives every scenario against one ``berth.testing.sandbox.Sandbox``
and checks the invariants after each; the report counts what was tried and every violation.
"""
