"""Training many models of one shape at once as one stacked model, with each member's numbers
exactly as alone."""
