"""Torch-free onnxruntime runtime for exported gancli generators (see runtime/generate.py).

Kept empty so `from runtime.errors import ...` in the CLI loads neither onnxruntime nor OpenCV.
"""
