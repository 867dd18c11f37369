"""Export a generator artifact to ONNX and TorchScript, checked for parity with eager PyTorch.

Kept free of imports: `cli` imports `export.errors` at start-up and must not load torch for it.
"""
