"""A fake camera for the browser tests: Chromium's fake capture device plays a .y4m file
(``--use-file-for-fake-video-capture``) in a loop, so a page's ``getUserMedia`` sees the
picture made here. The ``fake_camera`` fixture (tests/browser/conftest.py) starts a
Chromium that films it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

WIDTH, HEIGHT = 640, 480
# 4:2:0 chroma (Pillow's YCbCr is JPEG's, hence C420jpeg), progressive, square pixels.
Y4M_HEADER = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode()


def write_y4m(png_path: Path, out_path: Path, frames: int = 30) -> Path:
    """Write ``frames`` frames (one second at 30 fps; Chromium loops the file) of the
    picture at ``png_path``, scaled to fit 640x480 and letterboxed in white (a QR code's
    quiet zone is white), as a YUV4MPEG2 file at ``out_path``."""
    if frames < 1:
        raise ValueError(f"a video needs at least one frame, not {frames}")
    with Image.open(png_path) as picture:
        frame = ImageOps.pad(picture.convert("RGB"), (WIDTH, HEIGHT), color="white")
    luma, blue, red = frame.convert("YCbCr").split()
    half = (WIDTH // 2, HEIGHT // 2)
    planes = [luma, blue.resize(half, Image.Resampling.BOX), red.resize(half, Image.Resampling.BOX)]
    data = b"FRAME\n" + b"".join(plane.tobytes() for plane in planes)
    with open(out_path, "wb") as out:
        out.write(Y4M_HEADER)
        for _ in range(frames):
            out.write(data)
    return out_path
