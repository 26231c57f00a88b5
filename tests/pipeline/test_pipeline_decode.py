"""decode_image: real files of every common mode, decoded as a browser displays them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import (
    UnreadableImageError,
    array_png,
    decode_image,
    display_png,
    displayed_size,
    image_array,
    read_image,
)


def test_16_bit_gradient_is_scaled_by_bit_depth_not_clipped(tmp_path):
    gradient = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)  # 0..65535
    path = tmp_path / "deep.png"
    Image.fromarray(gradient).save(path)
    assert Image.open(path).mode == "I;16"  # a real 16-bit PNG on disk
    image = decode_image(path)
    assert image.mode == "L"
    assert np.array_equal(np.asarray(image).ravel(), np.arange(256))  # 0, 1, ..., 255 evenly
    array = read_image(path, size=16, channels=1)
    np.testing.assert_array_equal(array.ravel(), np.arange(256, dtype=np.float32) / np.float32(255.0))
    assert array[0, 0, 0] == 0.0 and array[0, 0, 1] == np.float32(1 / 255) and array[0, -1, -1] == 1.0


def test_16_bit_big_endian_and_mode_i_in_16_bit_range(tmp_path):
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    big = Image.frombytes("I;16B", (2, 2), values.astype(">u2").tobytes())
    assert np.asarray(decode_image(_png_bytes(big))).tolist() == [[0, 100], [200, 255]]
    as_i = Image.fromarray(values.astype(np.int32), mode="I")
    path = tmp_path / "i.tif"
    as_i.save(path)
    assert Image.open(path).mode == "I"
    assert np.asarray(decode_image(path)).tolist() == [[0, 100], [200, 255]]


def test_mode_i_outside_16_bits_and_float_are_refused_with_the_mode(tmp_path):
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32), mode="I").save(wide)
    with pytest.raises(UnreadableImageError, match=r"wide.tif.*mode 'I'.*0\.\.70000"):
        decode_image(wide)
    floats = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5]], dtype=np.float32), mode="F").save(floats)
    with pytest.raises(UnreadableImageError, match=r"float.tif.*mode 'F'.*8- or 16-bit PNG") as info:
        decode_image(floats)
    assert info.value.path == str(floats) and "mode 'F'" in info.value.reason
    assert isinstance(info.value, DatasetError)


def test_rgba_stroke_drawn_only_in_alpha_is_dark_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # colour black everywhere, alpha 0 = invisible
    rgba[3, :, 3] = 255  # an opaque black horizontal stroke on row 3
    path = tmp_path / "stroke.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = decode_image(path)
    assert image.mode == "RGB"
    gray = read_image(path, size=8, channels=1)
    assert np.all(gray[0, 3] == 0.0)
    assert np.all(np.delete(gray[0], 3, axis=0) == 1.0)
    # Pillow's own convert("L") would lose the stroke: everything black.
    assert np.all(np.asarray(Image.open(path).convert("L")) == 0)


def test_half_transparent_la_is_blended_over_white(tmp_path):
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[..., 1] = [[0, 255], [128, 255]]
    la[1, 1, 0] = 200
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    image = decode_image(path)
    assert image.mode == "L"
    assert np.asarray(image).tolist() == [[255, 0], [127, 200]]


def test_exif_orientation_6_is_shown_upright(tmp_path):
    # Stored 4 wide x 2 high, marker at stored (x=0, y=0); orientation 6 = rotate 90° clockwise to display.
    stored = np.full((2, 4, 3), 255, dtype=np.uint8)
    stored[0, 0] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.JPG"
    Image.fromarray(stored).resize((40, 20), Image.Resampling.NEAREST).save(path, exif=exif, quality=95)
    image = decode_image(path)
    assert image.size == (20, 40)  # now 20 wide, 40 high
    pixels = np.asarray(image.convert("L"))
    # After a clockwise turn the stored top-left lands at the top-right.
    assert pixels[5, 15] < 40 and pixels[5, 4] > 215 and pixels[35, 15] > 215
    # The size Label Studio paints a brush mask at, read from the header: as shown, (height, width).
    assert displayed_size(path) == (40, 20)
    plain = tmp_path / "plain.png"
    Image.fromarray(stored).resize((40, 20)).save(plain)
    assert displayed_size(plain) == (20, 40)


def test_displayed_size_names_a_file_it_cannot_read(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="notes.png: not an image file"):
        displayed_size(tmp_path / "notes.png")
    with pytest.raises(UnreadableImageError, match="img/gone.png: file does not exist"):
        displayed_size(tmp_path / "gone.png", name="img/gone.png")


def test_one_bit_palette_and_transparent_palette(tmp_path):
    bits = np.array([[0, 1], [1, 0]], dtype=bool)
    one = tmp_path / "one.png"
    Image.fromarray(bits).save(one)
    assert Image.open(one).mode == "1"
    decoded = decode_image(one)
    assert decoded.mode == "L" and np.asarray(decoded).tolist() == [[0, 255], [255, 0]]

    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255, 0, 0, 0])
    palette.putdata([0, 1, 2])
    plain = tmp_path / "palette.png"
    palette.save(plain)
    assert Image.open(plain).mode == "P"
    assert np.asarray(decode_image(plain)).tolist() == [[[255, 0, 0], [0, 0, 255], [0, 0, 0]]]

    keyed = tmp_path / "keyed.gif"
    palette.save(keyed, transparency=2)  # black pixel index is transparent -> white
    opened = Image.open(keyed)
    assert opened.mode == "P" and opened.info["transparency"] == 2
    assert np.asarray(decode_image(keyed)).tolist() == [[[255, 0, 0], [0, 0, 255], [255, 255, 255]]]


def test_eight_bit_gray_is_exact_and_replicated_to_rgb(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    path = tmp_path / "gray.PNG"
    Image.fromarray(pixels, mode="L").save(path)
    assert decode_image(path).mode == "L"
    rgb = read_image(path, size=8, channels=3)
    assert rgb.shape == (3, 8, 8) and rgb.dtype == np.float32
    for channel in rgb:
        np.testing.assert_array_equal(channel, pixels / np.float32(255.0))


def test_rgb_to_gray_uses_itu_601_luma(tmp_path):
    path = tmp_path / "colours.png"
    Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)).save(path)
    gray = read_image(path, size=3, channels=1)[0, 0] * 255
    # Pillow "L": (R*299 + G*587 + B*114) / 1000, rounded.
    np.testing.assert_allclose(gray, [76, 150, 29], atol=0.5)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    path = tmp_path / "print.jpg"
    cmyk.save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    image = decode_image(path)
    assert image.mode == "RGB"
    r, g, b = np.asarray(image)[8, 8].tolist()
    assert r > 240 and g < 15 and b < 15


def test_cielab_tiff_becomes_the_right_colours(tmp_path):
    from PIL import ImageCms

    rgb = Image.fromarray(np.array([[[255, 0, 0], [128, 128, 128]]], dtype=np.uint8))
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    path = tmp_path / "lab.tif"
    ImageCms.applyTransform(rgb, to_lab).save(path)
    assert Image.open(path).mode == "LAB"
    back = np.asarray(decode_image(path)).astype(int)
    np.testing.assert_allclose(back, [[[255, 0, 0], [128, 128, 128]]], atol=8)


def test_ycbcr_image_becomes_rgb():
    ycbcr = Image.new("RGB", (2, 2), (0, 0, 255)).convert("YCbCr")
    assert ycbcr.mode == "YCbCr"
    rgb = image_array(ycbcr, size=2, channels=3)[:, 0, 0] * 255
    np.testing.assert_allclose(rgb, [0, 0, 255], atol=2)


@pytest.mark.parametrize("name, content, reason", [
    ("empty.png", b"", "empty file (0 bytes)"),
    ("notes.png", b"just some text, renamed\n", "not an image file"),
])
def test_empty_and_non_image_files_are_named_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError) as info:
        decode_image(path)
    assert info.value.path == str(path) and reason in info.value.reason
    assert str(info.value).startswith(f"cannot read image {path}: ") and "\n" not in str(info.value)


def test_truncated_png_and_missing_file(tmp_path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(UnreadableImageError, match="cut.png: .*truncated"):
        decode_image(cut)
    with pytest.raises(UnreadableImageError, match="gone.png: file does not exist"):
        read_image(tmp_path / "gone.png", size=8, channels=1, name="gone.png")


def test_bytes_and_display_png_give_the_decoded_pixels(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[1, 1, 3] = 255
    data = _png_bytes(Image.fromarray(rgba, mode="RGBA"))
    shown = Image.open(io.BytesIO(display_png(data)))
    assert shown.mode == "RGB"
    expected = np.full((4, 4, 3), 255, dtype=np.uint8)
    expected[1, 1] = 0
    assert np.array_equal(np.asarray(shown), expected)
    with pytest.raises(UnreadableImageError, match="<bytes>: empty data"):
        decode_image(b"")


def test_resize_is_square_and_values_stay_in_range(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.tile(np.array([0, 255], dtype=np.uint8), (10, 20))).save(path)
    array = read_image(path, size=8, channels=1)
    assert array.shape == (1, 8, 8) and array.min() >= 0.0 and array.max() <= 1.0
    with pytest.raises(DatasetError, match="channels must be 1 or 3"):
        read_image(path, size=8, channels=2)


def test_array_png_round_trips_8_bit_values():
    array = np.arange(12, dtype=np.float32).reshape(1, 3, 4) / 255.0
    back = np.asarray(Image.open(io.BytesIO(array_png(array, scale=2))))
    assert back.shape == (6, 8) and back[::2, ::2].tolist() == (np.arange(12).reshape(3, 4)).tolist()


def _png_bytes(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_large_jpeg_is_read_at_reduced_scale_with_the_same_content(tmp_path):
    # Four flat quadrants survive any scaling: the reduced decode must give the same picture.
    quadrants = np.zeros((400, 600), dtype=np.uint8)
    quadrants[:200, 300:] = 255
    quadrants[200:, :300] = 128
    path = tmp_path / "big.jpg"
    Image.fromarray(quadrants).save(path, quality=95)
    array = read_image(path, size=8, channels=1)[0]
    full = image_array(decode_image(path), size=8, channels=1)[0]
    np.testing.assert_allclose(array, full, atol=3 / 255)
    assert [round(float(array[r, c]) * 255) for r, c in ((1, 1), (1, 6), (6, 1))] == pytest.approx([0, 255, 128], abs=3)
    assert decode_image(path).size == (600, 400)  # what the annotator sees: full resolution


def test_gray_and_rgb_with_a_transparent_colour_key_show_white(tmp_path):
    gray = tmp_path / "keyed-gray.png"
    Image.fromarray(np.array([[0, 50]], dtype=np.uint8), mode="L").save(gray, transparency=0)
    assert Image.open(gray).info["transparency"] == 0
    assert np.asarray(decode_image(gray)).tolist() == [[255, 50]]
    rgb = tmp_path / "keyed-rgb.png"
    Image.fromarray(np.array([[[0, 0, 0], [10, 20, 30]]], dtype=np.uint8)).save(rgb, transparency=(0, 0, 0))
    assert np.asarray(decode_image(rgb)).tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_16_and_10_bit_pgm_are_scaled_by_their_maximum(tmp_path):
    deep = tmp_path / "deep.pgm"
    deep.write_bytes(b"P5\n2 2\n65535\n" + np.array([0, 257, 65535, 32896], dtype=">u2").tobytes())
    assert Image.open(deep).mode == "I"
    assert np.asarray(decode_image(deep)).tolist() == [[0, 1], [255, 128]]
    ten = tmp_path / "ten.pgm"  # maxval 1023: 1023 is white, 512 is mid-gray
    ten.write_bytes(b"P5\n2 2\n1023\n" + np.array([0, 1023, 512, 100], dtype=">u2").tobytes())
    assert np.asarray(decode_image(ten)).tolist() == [[0, 255], [128, 25]]
