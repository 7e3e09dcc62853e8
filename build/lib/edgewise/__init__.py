"""edgewise: minimal adversarial examples, min-max attacks and robust training for PyTorch classifiers."""

__version__ = "0.1.0"
