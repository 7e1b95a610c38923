"""audioscale: how general audio representations scale.

Stages (one sub-package each, in flow order): audio → data → models → train → embed →
metrics / probe → sweep → scaling → report. A stage imports only from stages before it.
"""

__version__ = "0.1.0"
