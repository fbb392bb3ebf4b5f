"""Reading the sign-in QR code from PNG and JPEG photos and screenshots."""

import pytest
import qrcode
import zxingcpp
from PIL import Image, ImageDraw

from idp_phone.qr import QrDecodeError, decode_qr

TEXT = "https://id.example.com/q/Zm9vYmFyLWJhei1xdXg"


def _qr_image(text=TEXT):
    return qrcode.make(text).get_image().convert("RGB")


def _code128_image(text):
    raw = memoryview(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128).to_image(3))
    height, width = raw.shape
    return Image.frombytes("L", (width, height), raw.tobytes()).convert("RGB")


def test_png_round_trip(tmp_path):
    path = tmp_path / "code.png"
    qrcode.make(TEXT).save(path)
    assert decode_qr(path) == TEXT
    assert decode_qr(str(path)) == TEXT


def test_jpeg_photo_of_a_screen(tmp_path):
    # The code small and off-centre on a larger, coloured, noisy-ish background, turned a
    # quarter, compressed as a lossy JPEG: what a photo of a laptop screen looks like.
    photo = Image.new("RGB", (1200, 900), (205, 214, 225))
    draw = ImageDraw.Draw(photo)
    for y in range(0, 900, 40):
        draw.line([(0, y), (1200, y + 25)], fill=(180, 190, 200), width=3)
    draw.text((40, 40), "Sign in to Demo RP: scan this code with your phone", fill=(20, 20, 20))
    photo.paste(_qr_image().resize((300, 300)).rotate(90), (700, 380))
    path = tmp_path / "photo.jpg"
    photo.save(path, "JPEG", quality=70)

    with Image.open(path) as check:
        assert check.format == "JPEG"
    assert decode_qr(path) == TEXT


def test_transparent_screenshot_is_read_on_white(tmp_path):
    # Dark modules opaque black, light modules fully transparent *black* pixels: read
    # naively (alpha dropped), the whole image would be black.
    gray = qrcode.make(TEXT).get_image().convert("L")
    alpha = gray.point(lambda v: 255 - v)
    screenshot = Image.merge("RGBA", (*[Image.new("L", gray.size, 0)] * 3, alpha))
    path = tmp_path / "screenshot.png"
    screenshot.save(path)
    assert decode_qr(path) == TEXT


def test_qr_code_is_preferred_over_another_barcode(tmp_path):
    image = Image.new("RGB", (900, 500), "white")
    image.paste(_code128_image("NOT-THE-CODE-123"), (20, 20))
    image.paste(_qr_image().resize((330, 330)), (540, 150))
    path = tmp_path / "both.png"
    image.save(path)
    # Both are really there and readable...
    found = {b.text for b in zxingcpp.read_barcodes(Image.open(path))}
    assert found == {"NOT-THE-CODE-123", TEXT}
    # ...and the QR code is the one returned.
    assert decode_qr(path) == TEXT


def test_only_a_linear_barcode_is_not_a_qr_code(tmp_path):
    path = tmp_path / "barcode.png"
    _code128_image("HELLO-123").save(path)
    with pytest.raises(QrDecodeError, match=r"no QR code found in .*barcode.png"):
        decode_qr(path)


def test_image_without_any_code(tmp_path):
    path = tmp_path / "blank.jpg"
    Image.new("RGB", (400, 300), (240, 240, 240)).save(path, "JPEG")
    with pytest.raises(QrDecodeError, match=r"^no QR code found in .*blank.jpg$"):
        decode_qr(path)


def test_a_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("https://id.example.com/q/abc\n")
    with pytest.raises(QrDecodeError, match=r"notes.png is not an image \(expected a PNG or JPEG"):
        decode_qr(path)


def test_a_truncated_image(tmp_path):
    good = tmp_path / "good.png"
    _qr_image().save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(QrDecodeError, match=r"cannot read the image .*cut.png"):
        decode_qr(cut)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(QrDecodeError, match=r"no such file: .*missing.png"):
        decode_qr(tmp_path / "missing.png")
    with pytest.raises(QrDecodeError, match="is not a file"):
        decode_qr(tmp_path)
