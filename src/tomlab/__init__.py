"""tomlab: theory-of-mind probing, steering, team play and debate, reproduced and stress-tested."""

__version__ = "0.1.0"
