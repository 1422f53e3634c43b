"""Hot-folder OCR daemon."""
