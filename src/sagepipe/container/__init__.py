"""Programs that run inside a step's sandbox, on the step's own Python (3.8 and up).

Standard library only; nothing here imports sagepipe. The engine runs these as files in the
step (the sandbox shows this folder read-only); it never imports them.
"""
