"""sparsecli: make PyTorch models smaller and faster by sparsification, measured with onnxruntime."""

__version__ = "0.1.0"
