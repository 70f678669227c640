"""toyworld."""
