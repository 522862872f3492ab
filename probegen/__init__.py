"""probegen: do truth probes trained on one dataset find truth in another?"""

__version__ = "0.1.0"
