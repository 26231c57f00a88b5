"""activelabel: train, score the unlabeled pool by uncertainty, label the most uncertain, repeat."""

__version__ = "0.1.0"
