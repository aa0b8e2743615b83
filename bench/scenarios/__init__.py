"""One module per scenario; each ``run(ctx, cfg)`` returns a JSON-able dict for the report.

A scenario that cannot measure something says so in its result (``error`` or
``unavailable`` with the reason) instead of raising, so that one missing piece
never costs the figures of the others.
"""
