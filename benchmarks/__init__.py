"""The side-by-side benchmark of trio_pool against the other ways off the event loop."""
