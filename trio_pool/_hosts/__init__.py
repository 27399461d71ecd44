"""The seam: where a worker's interface lives (see _base.Host)."""
