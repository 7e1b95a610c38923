"""Every fit of a study: from the results table to ``fits.json``."""
