"""The engines: everything that runs inside an engine process and may import Pillow, pypdfium2,
tesserocr or aspose. Only `base` (the contract and the loader) is imported by the main process."""
