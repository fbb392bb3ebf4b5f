"""Reading the sign-in QR code from a photo or a screenshot (PNG, JPEG, ...), with zxing-cpp."""

from __future__ import annotations

import os
from pathlib import Path

import zxingcpp
from PIL import Image, ImageOps, UnidentifiedImageError


class QrDecodeError(Exception):
    """The file cannot be read, is not an image, or holds no readable QR code."""


def _is_qr(barcode: zxingcpp.Barcode) -> bool:
    """Tell whether ``barcode`` is of the QR family (QR Code, Micro QR, rMQR)."""
    name = getattr(barcode.format, "name", None) or str(barcode.format)
    return "QR" in name.upper()


def _to_grayscale(image: Image.Image) -> Image.Image:
    """Upright, flattened on white (transparent screenshots), 8-bit grayscale."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def decode_qr(path: str | os.PathLike[str]) -> str:
    """Return the text of the QR code in the image at ``path``.

    Any barcode zxing-cpp reads is considered, but only a QR code is accepted; if the image
    holds several QR codes, the first one found is returned.
    Raises :class:`QrDecodeError` with a message fit for the user otherwise.
    """
    file = Path(path)
    if not file.exists():
        raise QrDecodeError(f"no such file: {file}")
    if not file.is_file():
        raise QrDecodeError(f"{file} is not a file")
    try:
        with Image.open(file) as image:
            image.load()
            gray = _to_grayscale(image)
    except UnidentifiedImageError as exc:
        raise QrDecodeError(f"{file} is not an image (expected a PNG or JPEG photo)") from exc
    except Image.DecompressionBombError as exc:
        raise QrDecodeError(f"{file} is too large an image to read") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise QrDecodeError(f"cannot read the image {file}: {exc}") from exc

    barcodes = zxingcpp.read_barcodes(gray)
    for barcode in barcodes:
        if _is_qr(barcode) and barcode.valid and barcode.text:
            return barcode.text
    if barcodes:
        kinds = ", ".join(sorted({str(barcode.format) for barcode in barcodes}))
        raise QrDecodeError(f"no QR code found in {file} (only other barcodes: {kinds})")
    raise QrDecodeError(f"no QR code found in {file}")
