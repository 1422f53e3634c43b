"""`python -m ocr_daemon`: the same as the `ocr-daemon` command."""

from ocr_daemon.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
