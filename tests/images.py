"""Generated files for every failure and format path: corrupt, truncated, exotic modes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image


def photo_array(seed: int = 0, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A smooth, photo-like RGB array (gradients plus noise), deterministic per seed."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * (1 + seed % 3)) % 256, (y * 2) % 256, (x + y + 40 * seed) % 256], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def write_bad_files(folder: Path, source: Path) -> dict[str, Path]:
    """Write an empty file, a text file, garbage bytes and a truncated JPEG named .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty": folder / "empty.jpg",
        "text": folder / "notes.jpg",
        "garbage": folder / "garbage.png",
        "truncated": folder / "truncated.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a picture\n")
    files["garbage"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    data = source.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 3])
    return files


def jpeg_with_orientation(path: Path, orientation: int, size: tuple[int, int] = (300, 200)) -> Path:
    """A JPEG stored landscape whose EXIF says how to rotate it."""
    img = Image.fromarray(photo_array(1, (size[1], size[0])))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())
    return path


def encoded(img: Image.Image, fmt: str) -> bytes:
    """Bytes of an image in a format."""
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


XMP_TEMPLATE = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Image::ExifTool 12.76">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">{}</rdf:Description>'
    "</rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>'
)


def xmp_packet(title: str | None = None, description: str | None = None,
               keywords: tuple[str, ...] = ()) -> bytes:
    """An XMP packet laid out as exiftool writes one, with Dublin Core title, description, subject."""
    from xml.sax.saxutils import escape

    parts = []
    for name, value in (("title", title), ("description", description)):
        if value is not None:
            parts.append(f'<dc:{name}><rdf:Alt><rdf:li xml:lang="x-default">{escape(value)}</rdf:li>'
                         f"</rdf:Alt></dc:{name}>")
    if keywords:
        items = "".join(f"<rdf:li>{escape(k)}</rdf:li>" for k in keywords)
        parts.append(f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>")
    return XMP_TEMPLATE.format("".join(parts)).encode("utf-8")


def photo_with_text(path: Path, *, seed: int = 0, description: str | bytes | None = None,
                    xp: dict[int, str] | None = None, user_comment: bytes | None = None,
                    make: str | None = None, model: str | None = None, xmp: bytes | None = None) -> Path:
    """A real photo (JPEG, PNG, WebP or TIFF by its suffix) whose EXIF and XMP carry the given text.

    `xp` maps Windows XP tag numbers (0x9C9B title, ...) to their text, stored as UTF-16LE.
    """
    img = Image.fromarray(photo_array(seed, (120, 160)))
    exif = Image.Exif()
    if description is not None:
        exif[270] = description
    for tag, text in (xp or {}).items():
        exif[tag] = text.encode("utf-16-le") + b"\0\0"
    if make:
        exif[271] = make
    if model:
        exif[272] = model
    if user_comment is not None:
        exif.get_ifd(0x8769)[0x9286] = user_comment
    options: dict[str, Any] = {"exif": exif.tobytes()}
    if xmp is not None and path.suffix.lower() == ".png":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        options["pnginfo"] = info
    elif xmp is not None:
        options["xmp"] = xmp
    img.save(path, **options)
    return path


def real_photo(name: str) -> Image.Image:
    """A real photo as RGB: scikit-image's by name, or matplotlib's "grace_hopper"."""
    if name == "grace_hopper":
        import matplotlib

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as img:
            return img.convert("RGB")
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def crop_fraction(img: Image.Image, fraction: float) -> Image.Image:
    """The picture less `fraction` of its width and height, taken evenly from both sides."""
    w, h = img.size
    dx, dy = round(w * fraction / 2), round(h * fraction / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def near_copies(img: Image.Image) -> dict[str, bytes]:
    """The same picture as others keep it: re-encoded at JPEG quality 60, resized to half,
    cropped by 5%, 10% brighter (JPEG bytes, by what was done)."""
    from PIL import ImageEnhance

    return {
        "q60": encoded_jpeg(img, quality=60),
        "half": encoded_jpeg(img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)),
        "crop5": encoded_jpeg(crop_fraction(img, 0.05)),
        "brighter": encoded_jpeg(ImageEnhance.Brightness(img).enhance(1.1)),
    }


def encoded_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of a picture."""
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


HOLDOUT_PHOTOS = ("astronaut", "chelsea", "camera", "grace_hopper")


def write_holdout(folder: Path) -> dict[str, list[Path]]:
    """Each photo as a PNG and four near copies of it; two other views of one more scene alone."""
    folder.mkdir()
    files: dict[str, list[Path]] = {}
    for name in HOLDOUT_PHOTOS:
        photo = real_photo(name)
        original = folder / f"{name}.png"
        photo.save(original)
        files[name] = [original]
        for kind, data in near_copies(photo).items():
            copy = folder / f"{name}-{kind}.jpg"
            copy.write_bytes(data)
            files[name].append(copy)
    scene = real_photo("coffee")
    w, h = scene.size
    for n, dx in enumerate((0.0, 0.3)):
        view = folder / f"coffee-view-{n}.jpg"
        scene.crop((round(w * dx), 0, round(w * (dx + 0.65)), round(h * 0.65))).save(view, quality=90)
        files[f"coffee-view-{n}"] = [view]
    return files


# Where photo_with_exif writes each tag: the main IFD, the Exif IFD or the GPS IFD, and its number.
EXIF_TAGS = {"make": (None, 271), "model": (None, 272), "orientation": (None, 274),
             "datetime": (None, 306), "original": (ExifTags.IFD.Exif, 36867),
             "offset": (ExifTags.IFD.Exif, 36881), "lat_ref": (ExifTags.IFD.GPSInfo, 1),
             "lat": (ExifTags.IFD.GPSInfo, 2), "lon_ref": (ExifTags.IFD.GPSInfo, 3),
             "lon": (ExifTags.IFD.GPSInfo, 4)}


def photo_with_exif(source: Path, target: Path, **tags: object) -> Path:
    """A real photo re-saved as JPEG with the given EXIF tags (named as in EXIF_TAGS)."""
    with Image.open(source) as img:
        exif = Image.Exif()
        for key, value in tags.items():
            ifd, number = EXIF_TAGS[key]
            (exif if ifd is None else exif.get_ifd(ifd))[number] = value
        img.convert("RGB").save(target, "JPEG", exif=exif)
    return target


def _dms(degrees: float) -> tuple[float, float, float]:
    whole, rest = divmod(abs(degrees) * 3600, 3600)
    minutes, seconds = divmod(rest, 60)
    return float(whole), float(minutes), round(seconds, 2)


def photo_taken_at(source: Path, target: Path, latitude: float, longitude: float) -> Path:
    """A real photo whose EXIF GPS says it was taken at this latitude and longitude."""
    return photo_with_exif(source, target, lat_ref="N" if latitude >= 0 else "S", lat=_dms(latitude),
                           lon_ref="E" if longitude >= 0 else "W", lon=_dms(longitude))


def photo_with_sign(source: Path, words: str, target: Path) -> Path:
    """A real photo with a white sign printed on it (Pillow's own font), saved as a JPEG."""
    from PIL import ImageDraw, ImageFont

    with Image.open(source) as opened:
        img = opened.convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(24, img.width // 16))
    _, _, width, height = draw.textbbox((0, 0), words, font=font)
    x, y = img.width // 10, img.height // 2
    draw.rectangle([x - 12, y - 12, x + width + 12, y + height + 12], fill="white")
    draw.text((x, y), words, font=font, fill=(20, 20, 20))
    target.parent.mkdir(parents=True, exist_ok=True)
    img.save(target, quality=90)
    return target
